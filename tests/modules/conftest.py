"""Fixtures of the module tests; they live in modsupport.py, which the tests also import helpers from."""

from modsupport import kernels, signing_key, volume  # noqa: F401  (fixtures)
