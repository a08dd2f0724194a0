"""Tests of `cssr-tasks pipeline run`, the local Tekton executor (a package, so its conftest stays its own)."""
