"""The Watcher: every Consul read the agent makes, on a bounded number of connections.

One blocking query per service would take 2,000 connections for 2,000 services, and
Consul caps a client at 200 (``http_max_conns_per_client``). Instead two blocking
queries stand for every watched service:

- ``/v1/health/state/any`` (the check detector): its index moves on any check change;
  per-service check fingerprints say which services changed (a node-level check, such as
  serfHealth, marks every watched service with an instance on that node);
- ``/v1/catalog/services`` (the registration detector): its index moves on any service
  registration, deregistration or change. A change of names or tags says which service;
  otherwise the next targeted read whose own ``X-Consul-Index`` reaches the catalog's
  explains the move (Consul gives a service the index of its last write), and when none
  does within ``explain_window``, every watched service is swept once.

Changed services are re-read with plain ``GET /v1/health/service/<name>`` by a fixed pool
of reader threads; only a change of the normalized content reaches the agent. A trickle
re-reads each service at least every ``resync_interval`` as a safety net for what no
detector shows (a node's address changing under services without an address of their own).
Other sources (config entries, KV) are classic long polls, one connection each. A
liveness probe (``/v1/health/state/critical`` filtered to nothing, on a short timeout)
notices a Consul that accepts connections and never answers, cuts every backoff short once
it answers again, and restarts the detectors when its index shows that Consul restarted or
restored a snapshot underneath their blocking queries.

Connections: long polls + readers + the probe <= ``max_connections``; the client's HTTP
pool (``pool_block=True``) enforces the same cap underneath.
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog

from syncer.discovery.client import ConsulClient, ConsulError
from syncer.discovery.events import (
    CatalogChanged,
    ConfirmRead,
    ConsulStateReset,
    ServiceChanged,
    ServiceReadFailed,
    WatchFailed,
    WatchRecovered,
)
from syncer.discovery.normalize import AnswerInvalid, Rules, catalog_service_names
from syncer.discovery.sources import (
    CatalogDetectorSource,
    CatalogSeen,
    ChecksSeen,
    HealthSource,
    HealthStateSource,
    Source,
)
from syncer.discovery.watch import Watch, WatchOptions, check_trust
from syncer.metrics import Metrics

log = structlog.get_logger("syncer.watcher")

LIVENESS_KEY = "consul:liveness"
DETECTORS = 2  # the check and the registration detector

# Reader priorities: lower goes first.
_DIRTY, _INITIAL, _SWEEP, _RESYNC = 1, 2, 3, 4
_UNSET: Any = object()


@dataclass(frozen=True)
class WatcherOptions:
    max_connections: int = 16
    wait: float = 300.0  # blocking-query wait of the long polls
    max_query_rate: float = 10.0  # per long poll, token bucket with burst 2
    max_last_contact: float = 10.0
    reserved_long_polls: int = 0  # connections kept for watch() sources beyond the detectors
    resync_interval: float = 600.0  # every service re-read at least this often; 0: never
    explain_window: float = 0.5  # seconds a catalog move may wait for a read that explains it
    liveness_interval: float = 5.0  # probe period while Consul answers (1 s while it does not)
    liveness_timeout: float = 2.0
    read_backoff_initial: float = 0.25
    read_backoff_max: float = 10.0
    long_poll_backoff_max: float = 2.0
    metrics: Metrics | None = None

    @property
    def readers(self) -> int:
        """Connections left for targeted reads once the long polls and the probe have theirs."""
        return self.max_connections - DETECTORS - self.reserved_long_polls - 1


@dataclass
class _Service:
    rules: Rules
    last: object = _UNSET  # fingerprint of the last content delivered
    index: int = 0  # X-Consul-Index of the last good read
    nodes: frozenset[str] = frozenset()
    read_at: float = 0.0  # monotonic time of the last read (good or failed)
    failures: int = 0
    retry_at: float | None = None


class Watcher:
    def __init__(
        self,
        client: ConsulClient,
        emit: Callable[[Any], None],
        options: WatcherOptions,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if options.readers < 1:
            raise ValueError(
                f"consul.max_connections = {options.max_connections} leaves no connection for reads "
                f"({DETECTORS} detectors, {options.reserved_long_polls} other long polls and the liveness probe)"
            )
        self._client = client
        self._emit = emit
        self._options = options
        self._clock = clock
        self._rng = rng or random.Random()
        # One lock, two conditions: readers wait for work on ``_work``, the timer thread on
        # ``_lock``. With one condition, the notify() of a queued read could wake the timer
        # instead of a reader, and the read waited for a reader's 1 s idle re-check.
        lock = threading.RLock()
        self._lock = threading.Condition(lock)
        self._work = threading.Condition(lock)
        self._stopped = threading.Event()
        self._services: dict[str, _Service] = {}
        self._queue: list[tuple[int, int, str, str]] = []  # (priority, seq, job, service)
        self._queued: dict[tuple[str, str], int] = {}  # (job, service) -> best queued priority
        self._in_flight: set[str] = set()
        self._redo: set[str] = set()  # dirtied while a read was in flight
        self._seq = itertools.count()
        self._checks: ChecksSeen | None = None
        self._catalog: CatalogSeen | None = None
        self._explain: tuple[int, float] | None = None  # (catalog index to explain, deadline)
        # Recent indexes of the check detector: one raft write registers a service and its
        # checks together, so a catalog move to an index the checks also moved to is
        # explained by the check diff made at that answer.
        self._check_indexes: list[int] = []
        self._sweep_pending = False
        self._selecting_tags: tuple[str, ...] = ()
        self._long_polls: dict[str, Watch] = {}
        self._threads: list[threading.Thread] = []
        self._consul_down = False
        self._next_resync = 0.0

    # --- the agent's side ------------------------------------------------------------

    def start(self, tags: Iterable[str] = ()) -> Watcher:
        self._selecting_tags = tuple(tags)
        self._start_long_poll(HealthStateSource(self._client), self._on_checks)
        self._start_long_poll(CatalogDetectorSource(self._client), self._on_catalog)
        for i in range(self._options.readers):
            self._spawn(self._read_loop, f"consul reader {i}")
        self._spawn(self._timer_loop, "consul timers")
        self._spawn(self._liveness_loop, "consul liveness")
        return self

    def stop(self) -> None:
        self._stopped.set()
        for watch in self._long_polls.values():
            watch.stop()
        with self._lock:
            self._lock.notify_all()
            self._work.notify_all()

    def join(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def watch(self, source: Source) -> None:
        """A classic long poll on its own connection (config entries, KV)."""
        extra = len(self._long_polls) - DETECTORS
        if extra >= self._options.reserved_long_polls:
            raise ValueError(f"no connection reserved for another long poll ({source.key})")
        self._start_long_poll(source, self._emit)

    def unwatch(self, key: str) -> None:
        watch = self._long_polls.pop(key, None)
        if watch is not None:
            watch.stop()

    def set_services(self, names: Iterable[str], rules: Rules) -> None:
        """Watch exactly these services; a new one is read at once, a dropped one goes quiet."""
        wanted = set(names)
        with self._lock:
            for name in list(self._services):
                if name not in wanted:
                    del self._services[name]
                    self._redo.discard(name)
            for name in sorted(wanted):
                state = self._services.get(name)
                if state is None:
                    self._services[name] = _Service(rules)
                    self._enqueue("read", name, _INITIAL)
                elif state.rules != rules:
                    state.rules, state.last = rules, _UNSET
                    self._enqueue("read", name, _DIRTY)

    def confirm(self, service: str) -> None:
        """A second, independent read of a held drop; answered with ``ConfirmRead``."""
        with self._lock:
            self._enqueue("confirm", service, 0)

    # --- long polls --------------------------------------------------------------------

    def _start_long_poll(self, source: Source, emit: Callable[[Any], None]) -> None:
        options = WatchOptions(
            wait=lambda: self._options.wait,
            max_query_rate=self._options.max_query_rate,
            max_last_contact=self._options.max_last_contact,
            # A handful of long polls at most: retrying each every ~2 s costs a down Consul
            # nothing, and a Consul that comes back is followed within about a second even
            # when the liveness probe's kick is missed.
            backoff_max=self._options.long_poll_backoff_max,
            metrics=self._options.metrics,
        )
        watch = Watch(source, emit, options, self._rng)
        self._long_polls[source.key] = watch
        if not self._stopped.is_set():
            watch.start()

    def _forward_control(self, event: object) -> bool:
        """Failures, recoveries and state resets of the detectors go to the agent as they are."""
        if isinstance(event, WatchFailed | WatchRecovered | ConsulStateReset):
            self._emit(event)
            return True
        return False

    def _on_checks(self, event: object) -> None:
        if self._forward_control(event) or not isinstance(event, ChecksSeen):
            return
        with self._lock:
            old, self._checks = self._checks, event
            self._check_indexes = [*self._check_indexes[-63:], event.index]
            if self._explain is not None and event.index == self._explain[0]:
                self._explain = None
            if old is None:
                return  # the first answer: every service is read anyway
            names = old.services.keys() | event.services.keys()
            dirty = {name for name in names if old.services.get(name) != event.services.get(name)}
            nodes = {n for n in old.nodes.keys() | event.nodes.keys() if old.nodes.get(n) != event.nodes.get(n)}
            if nodes:
                # A node-level check (serfHealth, maintenance) changes every service on the
                # node: those with checks there, and those whose instances we have seen there
                # (a passing-only read of a failed node no longer lists them, so that set
                # only grows).
                on_node = {
                    name
                    for seen in (old, event)
                    for name, rows in seen.services.items()
                    if any(row[0] in nodes for row in rows)
                }
                dirty |= on_node | {name for name, state in self._services.items() if state.nodes & nodes}
            log.debug("checks moved", index=event.index, services=sorted(dirty)[:20], nodes=sorted(nodes)[:20])
            for name in sorted(dirty & self._services.keys()):
                self._enqueue("read", name, _DIRTY)

    def _on_catalog(self, event: object) -> None:
        if self._forward_control(event) or not isinstance(event, CatalogSeen):
            return
        if self._selecting_tags:
            body = {name: sorted(tags) for name, tags in event.tags.items()}
            names, rejections = catalog_service_names(body, self._selecting_tags)
            self._emit(CatalogChanged(frozenset(names), tuple(rejections), event.at))
        with self._lock:
            old, self._catalog = self._catalog, event
            if old is None or event.index == old.index:
                return
            if event.index < old.index:
                # Consul's state was lost or restored: nothing we read before can be trusted
                # to still hold, so read every service again (the store holds the drops).
                self._sweep(self._clock())
                return
            changed = {n for n in old.tags.keys() | event.tags.keys() if old.tags.get(n) != event.tags.get(n)}
            log.debug("catalog moved", index=event.index, services=sorted(changed)[:20])
            dirty = changed & self._services.keys()
            for name in sorted(dirty):
                self._enqueue("read", name, _DIRTY)
            explained = event.index in self._check_indexes or any(
                state.index >= event.index for state in self._services.values()
            )
            if not changed and not explained:
                # Same names and tags, no check written with it: an instance moved (port,
                # address, meta) or a service without checks came or went. Which one shows in
                # the next read whose index reaches this one, or else in a sweep.
                self._explain = (event.index, self._clock() + self._options.explain_window)
                self._lock.notify_all()

    # --- targeted reads --------------------------------------------------------------------

    def _enqueue(self, job: str, service: str, priority: int) -> None:
        """Caller holds the lock."""
        key = (job, service)
        if job == "read" and service in self._in_flight:
            self._redo.add(service)
            return
        if self._queued.get(key, priority + 1) <= priority:
            return
        self._queued[key] = priority
        heapq.heappush(self._queue, (priority, next(self._seq), job, service))
        self._work.notify()

    def _next_job(self) -> tuple[str, str] | None:
        with self._lock:
            while not self._stopped.is_set():
                while self._queue:
                    priority, _, job, service = heapq.heappop(self._queue)
                    if self._queued.get((job, service)) != priority:
                        continue  # superseded by a more urgent entry
                    del self._queued[(job, service)]
                    if job == "read":
                        if service not in self._services:
                            continue
                        self._in_flight.add(service)
                    return job, service
                self._work.wait(1.0)
        return None

    def _read_loop(self) -> None:
        while True:
            job = self._next_job()
            if job is None:
                return
            kind, service = job
            try:
                if kind == "confirm":
                    self._confirm(service)
                else:
                    self._read(service)
            except Exception:  # a bug must not kill a reader silently
                log.exception("consul reader crashed on a job; continuing", service=service)
            finally:
                if kind == "read":
                    with self._lock:
                        self._in_flight.discard(service)
                        if service in self._redo and service in self._services:
                            self._redo.discard(service)
                            self._enqueue("read", service, _DIRTY)

    def _fetch(self, service: str, rules: Rules) -> tuple[Any, object, ServiceChanged, frozenset[str]]:
        started = time.monotonic()
        source = HealthSource(self._client, service, rules)
        answer = source.fetch(0, 0.0)
        if self._options.metrics is not None:
            self._options.metrics.consul_latency.labels(source.kind, "false").observe(time.monotonic() - started)
        check_trust(answer, self._options.max_last_contact)
        fingerprint, event = source.read(answer, answer.index or 0)
        nodes = frozenset(
            str(e["Node"].get("Node", ""))
            for e in answer.body
            if isinstance(e, dict) and isinstance(e.get("Node"), dict)
        )
        return answer, fingerprint, event, nodes

    def _read(self, service: str) -> None:
        with self._lock:
            state = self._services.get(service)
            if state is None:
                return
            rules = state.rules
        try:
            answer, fingerprint, event, nodes = self._fetch(service, rules)
        except (ConsulError, AnswerInvalid) as exc:
            self._read_failed(service, exc)
            return
        recovered = False
        with self._lock:
            state = self._services.get(service)
            if state is None:
                return  # unwatched while we read: a stopped watch emits nothing
            state.read_at = self._clock()
            recovered, state.failures, state.retry_at = state.failures > 0, 0, None
            state.index, state.nodes = answer.index or 0, state.nodes | nodes
            if self._explain is not None and state.index >= self._explain[0]:
                self._explain = None
            changed = fingerprint != state.last
            state.last = fingerprint
        if recovered:
            self._emit(WatchRecovered(f"service:{service}", time.monotonic()))
        if changed:
            self._emit(event)

    def _read_failed(self, service: str, exc: Exception) -> None:
        status = exc.status if isinstance(exc, ConsulError) else None
        with self._lock:
            state = self._services.get(service)
            if state is None:
                return
            state.failures += 1
            state.read_at = self._clock()
            opts = self._options
            delay = min(opts.read_backoff_max, opts.read_backoff_initial * 2 ** (state.failures - 1))
            state.retry_at = self._clock() + delay + self._rng.uniform(0, opts.read_backoff_initial)
            attempt = state.failures
            self._lock.notify_all()
        if self._options.metrics is not None:
            self._options.metrics.consul_errors.labels("health_service", str(status or type(exc).__name__)).inc()
        log.warning("consul query failed", service=service, error=str(exc), attempt=attempt)
        self._emit(ServiceReadFailed(service, str(exc), status, time.monotonic()))

    def _confirm(self, service: str) -> None:
        with self._lock:
            state = self._services.get(service)
            rules = state.rules if state is not None else None
        if rules is None:
            return
        try:
            _, _, event, _ = self._fetch(service, rules)
        except (ConsulError, AnswerInvalid) as exc:
            self._emit(ConfirmRead(service, None, str(exc), time.monotonic()))
            return
        self._emit(ConfirmRead(service, event.servers, "", time.monotonic()))

    # --- timers: retries, unexplained catalog moves, the resync trickle ----------------------

    def _timer_loop(self) -> None:
        with self._lock:
            while not self._stopped.is_set():
                now = self._clock()
                wake = [now + 1.0]
                for name, state in self._services.items():
                    if state.retry_at is not None:
                        if state.retry_at <= now:
                            state.retry_at = None
                            self._enqueue("read", name, _DIRTY)
                        else:
                            wake.append(state.retry_at)
                if self._explain is not None:
                    if self._explain[1] <= now:
                        self._explain = None
                        self._sweep(now)
                    else:
                        wake.append(self._explain[1])
                if self._sweep_pending and not self._queued:
                    self._sweep_pending = False
                    self._sweep(now)
                if self._options.resync_interval > 0 and self._services:
                    if now >= self._next_resync:
                        self._resync_one(now)
                    wake.append(self._next_resync)
                self._lock.wait(max(0.0, min(wake) - now))

    def _sweep(self, now: float) -> None:
        """Caller holds the lock. Read every watched service once (coalesced)."""
        if any(job == "read" and p == _SWEEP for (job, _), p in self._queued.items()):
            self._sweep_pending = True  # one sweep at a time; the next starts when it is done
            return
        log.info("catalog moved without saying which service; sweeping", services=len(self._services))
        if self._options.metrics is not None:
            self._options.metrics.consul_sweeps.inc()
        for name in sorted(self._services):
            self._enqueue("read", name, _SWEEP)

    def _resync_one(self, now: float) -> None:
        """Caller holds the lock. Re-read the service read longest ago; spread over the interval."""
        name = min(self._services, key=lambda n: self._services[n].read_at)
        if now - self._services[name].read_at >= self._options.resync_interval / 2:
            self._enqueue("read", name, _RESYNC)
        self._next_resync = now + self._options.resync_interval / max(1, len(self._services))

    # --- liveness -------------------------------------------------------------------------

    def _liveness_loop(self) -> None:
        opts = self._options
        while not self._stopped.is_set():
            try:
                index = self._client.checks_index(opts.liveness_timeout)
            except ConsulError as exc:
                if not self._consul_down:
                    self._consul_down = True
                    log.warning("consul does not answer the liveness probe", error=str(exc))
                    if opts.metrics is not None:
                        opts.metrics.consul_up.set(0)
                self._emit(WatchFailed(LIVENESS_KEY, str(exc), exc.status, 1, time.monotonic()))
                self._stopped.wait(1.0)
                continue
            detector = self._long_polls.get(HealthStateSource.key)
            if index is not None and detector is not None and 0 < index < detector.high_water:
                self._restart_after_reset(detector.high_water, index)
            if self._consul_down:
                self._consul_down = False
                log.info("consul answers again; cutting every backoff short")
                self._emit(WatchRecovered(LIVENESS_KEY, time.monotonic()))
                self._kick()
            if opts.metrics is not None:
                opts.metrics.consul_up.set(1)
            self._stopped.wait(opts.liveness_interval)

    def _restart_after_reset(self, high: int, got: int) -> None:
        """Consul's checks index is below what the detector last saw: it restarted or
        restored a snapshot, and the detectors' blocking queries (asking for an index the
        new state has not reached) would hang for their whole wait. Start them afresh,
        tell the store, and read every service again."""
        log.warning("consul's index went backwards under the detectors; restarting them", high=high, got=got)
        self._emit(ConsulStateReset(LIVENESS_KEY, high, got, time.monotonic()))
        for key, old in list(self._long_polls.items()):
            old.stop()  # its thread ends when its query returns; the answer is dropped
            emit = self._on_checks if key == HealthStateSource.key else self._on_catalog
            self._start_long_poll(
                old.source, emit if key in (HealthStateSource.key, CatalogDetectorSource.key) else self._emit
            )
        with self._lock:
            self._sweep(self._clock())

    def _kick(self) -> None:
        for watch in list(self._long_polls.values()):
            watch.kick()
        with self._lock:
            now = self._clock()
            for state in self._services.values():
                if state.retry_at is not None:
                    state.retry_at = now
            self._lock.notify_all()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()
