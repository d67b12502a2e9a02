"""The long-running agent: the Watcher feeds events, the Store decides, one sink applies.

Threads: the Watcher's (two change detectors, a fixed pool of readers, timers, a liveness
probe; see discovery/watcher.py), one applier that alone touches the sink, and this main
loop, which alone touches the Store. The loop never blocks on Consul or nginx: an apply
runs on the applier and reports back as an event, so signals, the watchdog and new
changes are handled while nginx -t runs. Signal handlers only set flags and wake the loop
(patroni's habit); the loop acts on them.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import structlog

from syncer import config
from syncer.config import Settings
from syncer.discovery.client import ConsulClient
from syncer.discovery.events import Event
from syncer.discovery.normalize import Rejection, Rules
from syncer.discovery.watcher import Watcher, WatcherOptions
from syncer.health import HealthState, Verdict, apply_failure_cause, consul_failure_cause
from syncer.metrics import Metrics
from syncer.model import Desired
from syncer.observe import StatusServer
from syncer.planning import store as st
from syncer.planning.desired import desired_state
from syncer.planning.guard import DropGuard
from syncer.planning.quiescence import Quiescence
from syncer.routing.events import ConfigEntriesChanged
from syncer.routing.follow import RoutingFollower
from syncer.sinks import registry
from syncer.sinks.base import ApplyResult, Sink
from syncer.systemd import Notifier

log = structlog.get_logger("syncer.agent")

RETRY_BACKOFF_MAX = 30.0


class _Wake:
    """Put on the queue by signal handlers so the loop reacts at once."""


@dataclass(frozen=True)
class _Applied:
    result: ApplyResult
    reason: str
    desired: Desired
    started: float
    finished: float


@dataclass(frozen=True)
class _Probed:
    needs_reconcile: bool


WatcherFactory = Callable[[ConsulClient, Callable[[Any], None], WatcherOptions], Watcher]


def log_rejections(rejections: tuple[Rejection, ...], metrics: Metrics | None = None) -> None:
    for r in rejections:
        if metrics is not None:
            metrics.rejected.labels(r.service, r.field).inc()
        log.warning(
            "instance rejected",
            service=r.service,
            instance=r.instance,
            field=r.field,
            value=repr(r.value)[:200],
            reason=r.reason,
        )


class Applier:
    """One thread that runs sink calls in order, so the loop never waits on nginx."""

    def __init__(self, report: Callable[[Any], None], clock: Callable[[], float]) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], Any] | None] = queue.SimpleQueue()
        self._report = report
        self._clock = clock
        self.started_at: float | None = None  # set while a job runs
        self._thread = threading.Thread(target=self._run, name="applier", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self.started_at is not None

    def submit(self, job: Callable[[], Any]) -> None:
        self.started_at = self._clock()
        self._jobs.put(job)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                outcome = job()
            except Exception as exc:  # a sink bug must not kill the applier
                log.exception("apply crashed")
                outcome = exc
            self.started_at = None
            self._report(outcome)

    def close(self, timeout: float) -> None:
        self._jobs.put(None)
        self._thread.join(timeout)


class Agent:
    def __init__(
        self,
        settings: Settings,
        overrides: Mapping[str, Any] | None = None,
        sink_factory: Callable[[Settings], Sink] = registry.make_sink,
        client_factory: Callable[[Settings], ConsulClient] = lambda s: ConsulClient(s.consul),
        watcher_factory: WatcherFactory = Watcher,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self._overrides = dict(overrides or {})
        self._sink_factory = sink_factory
        self._client_factory = client_factory
        self._watcher_factory = watcher_factory
        self._notifier = notifier or Notifier()
        self._clock = clock
        self._events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.metrics = metrics or Metrics()
        self._client = client_factory(settings)
        self._sink = sink_factory(settings)
        self._watcher: Watcher | None = None
        self.store = self._new_store(settings)
        self.health = HealthState(settings.observe.consul_grace, settings.observe.nginx_grace)
        self.metrics.healthy.set_function(lambda: 1.0 if self.verdict().ok else 0.0)
        self.status_server: StatusServer | None = None
        self._quiescence = Quiescence(*settings.quiescence.resolved(settings.mode))
        self._applier = Applier(self._events.put, clock)
        self._stop = threading.Event()
        self._hup = False
        self._retry_at: float | None = None
        self._retry_delay = 1.0
        self._force = False  # apply even without a data change (after SIGHUP, reconcile)
        self.synced_once = False
        self._initial_attempted = False
        self._next_probe = 0.0
        self._next_anti_entropy = 0.0
        self._in_flight: dict[str, float] = {}  # changes the running apply carries
        self.last_result: ApplyResult | None = None
        self._routing = RoutingFollower(self.metrics.registry) if settings.services.routing else None  # routing.md

    # --- wiring --------------------------------------------------------------------------

    @staticmethod
    def _new_store(settings: Settings) -> st.Store:
        safety = settings.safety
        return st.Store(
            guard=DropGuard(safety.max_drop_share, safety.drop_confirm_delay),
            configured=frozenset(settings.services.names),
            tags=tuple(settings.services.tags),
            state_loss_grace=safety.state_loss_grace,
            initial_wait=safety.initial_wait,
        )

    def _rules(self) -> Rules:
        return Rules(
            include_warning=self.settings.consul.include_warning,
            allow_hostnames=registry.dialect(self.settings.mode).accepts_hostnames,
        )

    def _start_watcher(self, commands: list[st.Command]) -> None:
        consul = self.settings.consul
        options = WatcherOptions(
            max_connections=consul.max_connections,
            wait=consul.wait,
            max_query_rate=consul.max_query_rate,
            max_last_contact=consul.max_last_contact,
            resync_interval=consul.resync_interval,
            metrics=self.metrics,
            reserved_long_polls=len(RoutingFollower.KINDS) if self._routing else 0,  # one per config-entry kind
        )
        self._watcher = self._watcher_factory(self._client, self._events.put, options)
        self._watcher.start(self.settings.services.tags)
        for source in self._routing.sources(self._client) if self._routing else ():
            self._watcher.watch(source)
        self._execute(commands)

    def _stop_watcher(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None

    # --- carrying out the store's commands ------------------------------------------------

    def _execute(self, commands: list[st.Command]) -> None:
        for command in commands:
            if isinstance(command, st.SetServices):
                if self._watcher is not None:
                    self._watcher.set_services(command.names, self._rules())
                self.metrics.watched_services.set(len(command.names))
            elif isinstance(command, st.Confirm):
                if self._watcher is not None:
                    self._watcher.confirm(command.service)
            elif isinstance(command, st.Rejected):
                log_rejections(command.rejections, self.metrics)
            elif isinstance(command, st.DropHeld):
                self._report_held(command)
            elif isinstance(command, st.DropDecided):
                self._report_decided(command)
            elif isinstance(command, st.ServiceLeft):
                log.info("service left the selection; its upstream is kept empty", service=command.service)
            elif isinstance(command, st.StateReset):
                log.warning(
                    "consul's index went backwards: its state was lost or restored; holding drops",
                    watch=command.key,
                    high=command.high,
                    got=command.got,
                    grace=self.settings.safety.state_loss_grace,
                )
                self.metrics.consul_state_resets.inc()

    def _report_held(self, held: st.DropHeld) -> None:
        safety = self.settings.safety
        if held.why == "sharp drop":
            log.warning(
                "sharp drop held until a second read confirms it",
                service=held.service,
                before=held.before,
                after=held.after,
                confirm_in=safety.drop_confirm_delay,
            )
        else:
            log.warning(
                "drop held: consul lost its state and may be refilling",
                service=held.service,
                before=held.before,
                after=held.after,
                grace=safety.state_loss_grace,
            )
        self.metrics.held_drops.labels(held.service, "held").inc()

    _DECIDED = {
        "confirmed": "sharp drop confirmed; applying",
        "recovered": "sharp drop not confirmed; applying the new read",
        "confirm failed": "confirming read failed; drop stays held",
        "refilled": "instances back after consul lost its state; applying",
        "grace over": "consul state-loss grace over; following consul",
    }

    def _report_decided(self, decided: st.DropDecided) -> None:
        extra = {"error": decided.error} if decided.error else {}
        log.warning(
            self._DECIDED[decided.outcome],
            service=decided.service,
            before=decided.before,
            after=decided.after,
            **extra,
        )
        self.metrics.held_drops.labels(decided.service, decided.outcome.replace(" ", "_")).inc()

    def _handle(self, item: Any) -> None:
        if isinstance(item, _Applied):
            self._finish_sync(item)
        elif isinstance(item, _Probed):
            self._finish_probe(item)
        elif isinstance(item, Exception):
            self._finish_crash(item)
        elif isinstance(item, ConfigEntriesChanged) and self._routing is not None:
            self._execute(self.store.set_extra(self._routing.handle(item), self._clock()))
            self._quiescence.changed(self._clock())
        elif not isinstance(item, _Wake):
            event: Event = item
            self._execute(self.store.handle(event, self._clock()))

    # --- applying ------------------------------------------------------------------------

    def _sync(self, reason: str) -> None:
        snapshot = self.store.snapshot()
        desired = self._routing.plan(snapshot) if self._routing else desired_state(snapshot)
        reconcile, sink, clock = self._force, self._sink, self._clock
        self._in_flight = self.store.applied()
        self._quiescence.reset()
        self._force = False
        if pending := self.store.pending():
            log.warning("applying without services that have not answered yet", services=sorted(pending)[:20])

        def job() -> _Applied:
            started = clock()
            result = sink.apply(desired, reconcile=reconcile)
            return _Applied(result, reason, desired, started, clock())

        self._applier.submit(job)

    def _finish_sync(self, done: _Applied) -> None:
        result, desired = done.result, done.desired
        duration = round(done.finished - done.started, 4)
        self.last_result = result
        self._count(result)
        for change in result.changes:
            log.info("upstream changed", action=result.action, duration=duration, **change.summary())
        fields: dict[str, Any] = {
            "action": result.action,
            "reason": done.reason,
            "upstreams": len(desired.upstreams),
            "changed": len(result.changes),
            "duration": duration,
        }
        if result.ok:
            log.info("sync", **fields)
            self.health.applied()
            self.metrics.last_success.set_to_current_time()
            for name, upstream in desired.upstreams.items():
                self.metrics.instances.labels(name).set(len(upstream.servers))
            if result.action != "unchanged":
                for at in self._in_flight.values():
                    self.metrics.change_to_applied.labels(self.settings.mode).observe(max(0.0, done.finished - at))
            self._retry_at = None
            self._retry_delay = 1.0
            if not self.synced_once:
                self.synced_once = True
                self._next_anti_entropy = self._clock() + self.settings.api.anti_entropy
                self._next_probe = self._clock() + self.settings.api.probe_interval
            self._notifier.status(f"in sync: {len(desired.upstreams)} upstreams ({result.action})")
        else:
            log.error("sync failed; last good state stays in force", detail=result.detail, **fields)
            self.health.apply_failed(done.finished, result.detail, cause=apply_failure_cause(result))
            for name, at in self._in_flight.items():
                self.store.changed_at.setdefault(name, at)  # still to be applied
            if result.retryable:
                self._retry_at = self._clock() + self._retry_delay
                self._retry_delay = min(self._retry_delay * 2, RETRY_BACKOFF_MAX)
            self._notifier.status(f"sync {result.action}: {result.detail[:200]}")
        self._in_flight = {}

    def _finish_crash(self, exc: Exception) -> None:
        self.health.apply_failed(self._clock(), f"apply crashed: {exc}")
        for name, at in self._in_flight.items():
            self.store.changed_at.setdefault(name, at)
        self._in_flight = {}
        self._retry_at = self._clock() + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, RETRY_BACKOFF_MAX)

    def _count(self, result: ApplyResult) -> None:
        self.metrics.syncs.labels(result.action).inc()
        for name, _reason in result.failed_upstreams:  # the others were pushed; these are retried
            self.metrics.push_failures.labels(name).inc()
        counters = {
            "nginx_test": self.metrics.config_tests,
            "reload": self.metrics.reloads,
            "push": self.metrics.pushes,
        }
        for kind, outcome in result.steps:
            if kind in counters:
                counters[kind].labels(outcome).inc()

    def _probe(self, now: float) -> None:
        """Anti-entropy: re-read what nginx holds when it may have moved without us."""
        api = self.settings.api
        self._next_probe = now + api.probe_interval
        if now >= self._next_anti_entropy:
            self._next_anti_entropy = now + api.anti_entropy
            self._force = True
            self._sync("anti-entropy")
            return
        sink = self._sink
        self._applier.submit(lambda: _Probed(sink.needs_reconcile()))

    def _finish_probe(self, probed: _Probed) -> None:
        if probed.needs_reconcile:
            self._force = True
            self._sync("nginx state moved")

    # --- health ----------------------------------------------------------------------------

    def verdict(self) -> Verdict:
        self.health.consul_failing_since = self.store.consul_failing_since()
        if self.health.consul_failing_since is not None:
            self.health.last_consul_error = self.store.last_error
            self.health.consul_cause = consul_failure_cause(self.store.last_status)
        return self.health.verdict(self._clock())

    def _start_status_server(self) -> None:
        listen = self.settings.observe.listen
        if not listen:
            return
        try:
            self.status_server = StatusServer(listen, self.metrics, self.verdict).start()
        except OSError as exc:
            log.error("cannot serve /metrics and /healthz; running without them", listen=listen, error=str(exc))
            return
        log.info("status endpoint listening", listen=listen, port=self.status_server.port)

    def _watchdog_honest(self, now: float) -> bool:
        """Feed the watchdog unless an apply has run past its budget (then it is hung)."""
        started = self._applier.started_at
        budget = registry.dialect(self.settings.mode).apply_budget(self.settings)
        return started is None or now - started <= budget

    # --- signals and config ------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self._hup = True
        else:
            self._stop.set()
        self._events.put(_Wake())  # SimpleQueue.put is safe in a signal handler

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)

    def _reload_config(self) -> None:
        self._notifier.reloading()
        source: Path | None = self.settings.source
        try:
            new = config.load(source, overrides=self._overrides)
            new.require_services()
            if new.mode != self.settings.mode:
                raise config.ConfigError("mode", new.mode, "cannot change while running; restart the agent")
            sink = self._sink_factory(new)
        except (config.ConfigError, OSError) as exc:
            log.error("new configuration refused; keeping the running one", error=str(exc))
            self._notifier.ready("new configuration refused; running on the previous one")
            return
        self._sink.close()
        self._sink = sink
        old, self.settings = self.settings, new
        self._quiescence = Quiescence(*new.quiescence.resolved(new.mode))
        now = self._clock()
        commands = self.store.reconfigure(new.services.names, new.services.tags, now)
        if old.consul != new.consul or old.services.tags != new.services.tags:
            # A new Consul, or new tags for the registration detector: a fresh watcher
            # (it reads every service once; only real differences reach nginx).
            self._stop_watcher()
            if old.consul != new.consul:
                self._client.close()
                self._client = self._client_factory(new)
            self._start_watcher(commands)
        else:
            self._execute(commands)
        self._force = True
        self._quiescence.changed(now)
        log.info("configuration reloaded", source=str(source) if source else None)
        self._notifier.ready("configuration reloaded")

    # --- the loop ------------------------------------------------------------------------

    def _next_wake(self, now: float, next_watchdog: float | None) -> float:
        candidates = [now + 1.0]
        if not self._applier.busy:
            deadline = self._quiescence.deadline()
            if deadline is not None and self.store.ready(now):
                candidates.append(deadline)
            if self._retry_at is not None:
                candidates.append(self._retry_at)
            if self.synced_once:
                candidates.append(self._next_probe)
        if next_watchdog is not None:
            candidates.append(next_watchdog)
        store_deadline = self.store.next_deadline()
        if store_deadline is not None:
            candidates.append(store_deadline)
        # Never a busy loop: a deadline already past (a quiescence that waits for the
        # store to be ready) is looked at again after a short pause, not at once.
        return max(0.01, min(candidates) - now)

    def _decide(self, now: float) -> None:
        if self._applier.busy or not self.store.ready(now):
            return
        if not self._initial_attempted:
            self._initial_attempted = True  # the first full picture goes out at once
            self._sync("initial")
        elif self._quiescence.due(now):
            self._sync("change" if self.synced_once else "initial")
        elif self._retry_at is not None and now >= self._retry_at:
            self._retry_at = None
            self._sync("retry")
        elif self.synced_once and now >= self._next_probe:
            self._probe(now)

    def run(self) -> int:
        log.info(
            "agent starting",
            mode=self.settings.mode,
            services=list(self.settings.services.names),
            tags=list(self.settings.services.tags),
            consul=self._client.base_url,
            max_connections=self.settings.consul.max_connections,
        )
        self._start_status_server()
        self._start_watcher(self.store.start(self._clock()))
        self._notifier.ready("waiting for Consul")
        interval = self._notifier.watchdog_interval
        next_watchdog = self._clock() if interval else None
        try:
            while not self._stop.is_set():
                now = self._clock()
                try:
                    item: Any = self._events.get(timeout=self._next_wake(now, next_watchdog))
                except queue.Empty:
                    item = None
                revision = self.store.revision
                while item is not None:
                    self._handle(item)
                    try:
                        item = self._events.get_nowait()
                    except queue.Empty:
                        item = None
                if self._stop.is_set():
                    break
                now = self._clock()
                self._execute(self.store.tick(now))
                if self.store.revision != revision:
                    self._quiescence.changed(now)
                if self._hup and not self._applier.busy:
                    self._hup = False
                    self._reload_config()
                if interval and next_watchdog is not None and now >= next_watchdog and self._watchdog_honest(now):
                    self._notifier.watchdog()
                    next_watchdog = now + interval
                self._decide(now)
        finally:
            self._notifier.stopping()
            log.info("agent stopping")
            self._stop_watcher()
            self._applier.close(timeout=registry.dialect(self.settings.mode).apply_budget(self.settings))
            self._sink.close()
            self._client.close()
            if self.status_server is not None:
                self.status_server.stop()
        return 0
