"""Starting servers on fresh ports, retried when another process takes a port first.

Distinct ports come from ``syncer.testing.ports.free_ports``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from syncer.testing.ports import free_ports

__all__ = ["free_ports", "start_with_fresh_ports"]

T = TypeVar("T")
ATTEMPTS = 3


def start_with_fresh_ports(build: Callable[[], T], start: Callable[[T], object], stop: Callable[[T], object]) -> T:
    """``build()`` (which picks ports) then ``start()``; on "Address already in use", build anew."""
    for attempt in range(ATTEMPTS):
        thing = build()
        try:
            start(thing)
            return thing
        except Exception as exc:
            stop(thing)
            if "in use" not in str(exc) or attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")
