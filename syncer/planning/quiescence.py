"""consul-template's ``wait {min, max}``: batch changes that arrive close together.

Fire ``min`` seconds after the last change, but never later than ``max`` seconds after
the first one, so a steady trickle of changes cannot postpone applying forever.
Time is passed in; nothing here reads a clock.
"""

from __future__ import annotations


class Quiescence:
    def __init__(self, min_wait: float, max_wait: float) -> None:
        if min_wait < 0 or max_wait < min_wait:
            raise ValueError("need 0 <= min <= max")
        self.min_wait = min_wait
        self.max_wait = max_wait
        self._first: float | None = None
        self._last: float | None = None

    @property
    def pending(self) -> bool:
        return self._first is not None

    def changed(self, now: float) -> None:
        if self._first is None:
            self._first = now
        self._last = now

    def deadline(self) -> float | None:
        if self._first is None or self._last is None:
            return None
        return min(self._last + self.min_wait, self._first + self.max_wait)

    def due(self, now: float) -> bool:
        deadline = self.deadline()
        return deadline is not None and now >= deadline

    def reset(self) -> None:
        self._first = self._last = None
