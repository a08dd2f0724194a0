"""Image tests: a package, so that its conftest and helpers do not take the top-level names `conftest`, `taskrun`."""
