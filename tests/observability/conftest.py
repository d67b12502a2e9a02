"""Fixtures for the observability tests: a started nginx per mode (see tests/stack.py)."""

import sys

import pytest

# Helper modules assert too: have pytest rewrite them (unless an earlier conftest did).
for _module in "tests.stack":
    if _module not in sys.modules:
        pytest.register_assert_rewrite(_module)

from tests.stack import stack  # noqa: E402

__all__ = ["stack"]
