"""The long-poll loop, written once for every source.

Per iteration: take a token from the watch's bucket, ask with the current index and a
jittered wait (on one of the client's limited connections: the pool blocks when they are
all taken), check the answer is trustworthy, move the index by Consul's rules, and emit an
event only when the normalized content changed. Failures retry through tenacity with
exponential backoff and jitter, interruptibly, and are reported as ``WatchFailed`` events;
``kick()`` cuts a backoff short once Consul is known to answer again. An index below the
highest one seen means Consul lost or restored its state: reported as ``ConsulStateReset``.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_when_event_set,
)

from syncer.discovery.blocking import TokenBucket, jittered_wait, next_index
from syncer.discovery.client import Answer, ConsulError
from syncer.discovery.events import ConsulStateReset, WatchFailed, WatchRecovered
from syncer.discovery.normalize import AnswerInvalid
from syncer.discovery.sources import Source
from syncer.metrics import Metrics
from syncer.retry import backoff

log = structlog.get_logger("syncer.watch")

_UNSET = object()


class SuspectAnswer(ConsulError):
    """An answer we do not act on: no known leader, or a server far behind the leader."""


@dataclass(frozen=True)
class WatchOptions:
    wait: Callable[[], float]  # seconds
    max_query_rate: float = 10.0
    max_last_contact: float = 10.0
    backoff_initial: float = 0.25
    backoff_max: float = 60.0
    metrics: Metrics | None = None


def check_trust(answer: Answer, max_last_contact: float) -> None:
    if answer.known_leader is False:
        raise SuspectAnswer("Consul answered with X-Consul-KnownLeader: false; not acting on it")
    if answer.last_contact_ms is not None and answer.last_contact_ms > max_last_contact * 1000:
        raise SuspectAnswer(
            f"Consul server last heard from the leader {answer.last_contact_ms} ms ago "
            f"(limit {max_last_contact * 1000:.0f} ms); not acting on it"
        )
    if answer.filtered_by_acls and not answer.body:
        # The token may not see what is there: an empty list is no proof of an empty service.
        raise SuspectAnswer(
            "Consul filtered this answer by ACLs (X-Consul-Results-Filtered-By-ACLs) and it is empty; "
            "the token lacks service:read or node:read; not acting on it"
        )


class Watch:
    def __init__(
        self,
        source: Source,
        emit: Callable[[Any], None],
        options: WatchOptions,
        rng: random.Random | None = None,
    ) -> None:
        self.source = source
        self._emit = emit
        self._options = options
        self._rng = rng or random.Random()
        self._bucket = TokenBucket(options.max_query_rate, burst=2)
        self.stopped = threading.Event()
        self._kicked = threading.Event()
        self._thread: threading.Thread | None = None
        self.index = 0
        self.high_water = 0  # the highest index Consul ever answered this watch with
        self._last: object = _UNSET
        self._failing = False

    def start(self) -> Watch:
        self._thread = threading.Thread(target=self.run, name=f"watch {self.source.key}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        self._kicked.set()

    def kick(self) -> None:
        """Consul answers again: end a backoff sleep now rather than after up to a minute."""
        self._kicked.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        status = exc.status if isinstance(exc, ConsulError) else None
        delay = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "consul query failed",
            watch=self.source.key,
            error=str(exc),
            attempt=state.attempt_number,
            retry_in=round(delay, 2),
        )
        self._failing = True
        if self._options.metrics is not None:
            kind = str(status) if status else type(exc).__name__
            self._options.metrics.consul_errors.labels(self.source.kind, kind).inc()
        self._emit(WatchFailed(self.source.key, str(exc), status, state.attempt_number, time.monotonic()))
        # After any failure, re-read at once (non-blocking) instead of blocking on the old
        # index: a suspect answer's index is not to be trusted, and a Consul that restarted
        # (or a different server behind the address) may be at a lower index, where a
        # blocking query with ours would hang for the whole wait before it answered.
        self.index = 0

    def _retrying(self) -> Retrying:
        return Retrying(
            retry=retry_if_exception_type((ConsulError, AnswerInvalid)),
            wait=backoff(
                self._options.backoff_initial, self._options.backoff_max, jitter=self._options.backoff_initial
            ),
            stop=stop_when_event_set(self.stopped),
            sleep=self._sleep,
            before_sleep=self._before_sleep,
            reraise=False,
        )

    def _sleep(self, seconds: float) -> None:
        self._kicked.wait(seconds)
        self._kicked.clear()

    def step(self) -> None:
        """One query, one decision. Raises on failure (the caller retries)."""
        delay = self._bucket.take()
        if delay > 0 and self.stopped.wait(delay):
            return
        started = time.monotonic()
        sent = self.index
        answer = self.source.fetch(sent, jittered_wait(self._options.wait(), self._rng))
        if self.stopped.is_set():
            return  # replaced or stopped while the query was in flight: its answer is stale
        if self._options.metrics is not None:
            self._options.metrics.consul_latency.labels(self.source.kind, str(sent >= 1).lower()).observe(
                time.monotonic() - started
            )
        check_trust(answer, self._options.max_last_contact)
        new_index = next_index(sent, answer.index)
        fingerprint, event = self.source.read(answer, new_index)
        if new_index == 0:
            log.info("consul index went backwards; resetting", watch=self.source.key, sent=sent, got=answer.index)
        got = answer.index or 0
        if got and self.high_water and got < self.high_water:
            # Compared with the high-water mark, not the index sent: after a failure the
            # watch asks with 0, and a Consul that came back empty must still be noticed.
            self._emit(ConsulStateReset(self.source.key, self.high_water, got, time.monotonic()))
            self.high_water = got
        self.high_water = max(self.high_water, got)
        self.index = new_index
        if self._failing:
            self._failing = False
            self._emit(WatchRecovered(self.source.key, time.monotonic()))
        if fingerprint != self._last:
            self._last = fingerprint
            self._emit(event)

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                for attempt in self._retrying():
                    with attempt:
                        self.step()
            except RetryError:
                return  # stopped while retrying
            except Exception:  # a bug must not kill the watch silently
                log.exception("watch crashed; restarting it", watch=self.source.key)
                self.stopped.wait(1.0)
