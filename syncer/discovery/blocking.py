"""Consul's blocking-query rules, as pure functions (shared/notes/consul.md).

- The index only tells "maybe changed"; callers decide on the normalized content.
- An index that goes backwards resets to 0, which means "read at once, not blocking".
- An index below 1 is never sent in a blocking call (0 would return at once: a busy loop).
- The read timeout exceeds ``wait + wait/16`` (the server's own jitter).
- Each request draws its own ``wait`` below the configured one, so many watchers do not
  reconnect in waves.
- A token bucket (burst 2) bounds how often one watch may ask.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable


def next_index(sent: int, returned: int | None) -> int:
    """The index to send next, given the one we sent and the ``X-Consul-Index`` we got."""
    if returned is None:
        return 0  # no header: we know nothing, read afresh
    if returned < 1:
        return 1  # a zero index is a Consul bug; 0 would busy-loop, 1 still blocks
    if returned < sent:
        return 0  # snapshot restore or server change: start over with a non-blocking read
    return returned


def query_index(index: int) -> int | None:
    """The ``index`` parameter to send, or None for a plain (non-blocking) read."""
    return index if index >= 1 else None


def jittered_wait(wait: float, rng: random.Random | None = None) -> float:
    """A wait drawn uniformly from ``[wait - wait/8, wait]``."""
    rng = rng or random.Random()
    return wait - rng.uniform(0, wait / 8)


def format_wait(seconds: float) -> str:
    """Consul parses Go durations; milliseconds keep the jitter's precision."""
    return f"{max(1, round(seconds * 1000))}ms"


def read_timeout(wait: float, margin: float = 5.0) -> float:
    """How long the client waits for a blocking answer: wait, Consul's jitter, a margin."""
    return wait + wait / 16 + margin


class TokenBucket:
    """At most ``rate`` requests a second on average, with bursts of ``burst``.

    ``take()`` returns how long the caller must wait before it may send; the bucket
    never sleeps itself, so callers can wait on an event and stay stoppable.
    """

    def __init__(self, rate: float, burst: int = 2, clock: Callable[[], float] | None = None) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self._clock = clock or time.monotonic
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._stamp = self._clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
            self._tokens -= 1.0
            if self._tokens >= 0:
                return 0.0
            return -self._tokens / self._rate
