"""Fixtures for the integration tests: a started nginx per mode (see tests/stack.py)."""

from tests.stack import stack

__all__ = ["stack"]
