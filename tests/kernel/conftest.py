"""Fixtures of the kernel tier beyond the shared ones (tests/conftest.py)."""
from tests.helpers.underlay import underlay  # noqa: F401  (a fixture, registered by importing it here)
