"""Service tests (a package, so that this folder's conftest never shadows tests/conftest.py)."""
