"""The long-running agent: watches feed a store, planning decides, one sink applies.

Threads: one per watch (each a blocking query, capped by a shared connection gate) and
this main loop, which alone touches the store and the sink. Signal handlers only set
flags and wake the loop (patroni's habit); the loop acts on them.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import structlog

from syncer import config
from syncer.config import Settings
from syncer.discovery.client import ConsulClient
from syncer.discovery.events import (
    CatalogChanged,
    ConfirmRead,
    Event,
    ServiceChanged,
    WatchFailed,
    WatchRecovered,
)
from syncer.discovery.normalize import Rejection, Rules, health_entries
from syncer.discovery.sources import CatalogSource, HealthSource, Source
from syncer.discovery.watch import Watch, WatchOptions, check_trust
from syncer.health import HealthState, Verdict, apply_failure_cause
from syncer.metrics import Metrics
from syncer.model import Server, rendered_view
from syncer.observe import StatusServer
from syncer.planning.desired import desired_state
from syncer.planning.guard import DropGuard
from syncer.planning.quiescence import Quiescence
from syncer.sinks.base import ApplyResult, Sink
from syncer.sinks.factory import make_sink
from syncer.systemd import Notifier

log = structlog.get_logger("syncer.agent")

# How long the crowded pool's blocking queries wait when there are more watches than
# connections, so every watch gets a turn (see README, "Scale").
CROWDED_WAIT = 5.0
RETRY_BACKOFF_MAX = 30.0


class _Wake:
    """Put on the queue by signal handlers so the loop reacts at once."""


@dataclass
class Store:
    """The latest healthy set per service, and which selected services have answered."""

    services: dict[str, tuple[Server, ...]] = field(default_factory=dict)
    selected: set[str] = field(default_factory=set)
    catalog_answered: bool = True
    changed_at: dict[str, float] = field(default_factory=dict)  # first unapplied change

    def ready(self) -> bool:
        return self.catalog_answered and self.selected <= self.services.keys()


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


class Agent:
    def __init__(
        self,
        settings: Settings,
        overrides: Mapping[str, Any] | None = None,
        sink_factory: Callable[[Settings], Sink] = make_sink,
        client_factory: Callable[[Settings], ConsulClient] = lambda s: ConsulClient(s.consul),
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self._overrides = dict(overrides or {})
        self._sink_factory = sink_factory
        self._client_factory = client_factory
        self._notifier = notifier or Notifier()
        self._clock = clock
        self._events: queue.SimpleQueue[Event | _Wake] = queue.SimpleQueue()
        self.store = Store()
        self._watches: dict[str, Watch] = {}
        self._gate = threading.BoundedSemaphore(settings.consul.max_connections)
        self._client = client_factory(settings)
        self.metrics = metrics or Metrics()
        self._sink = sink_factory(settings)
        self.health = HealthState(settings.observe.consul_grace, settings.observe.nginx_grace)
        self._guard = DropGuard(settings.safety.max_drop_share, settings.safety.drop_confirm_delay)
        self._failing_watches: dict[str, float] = {}
        self._confirming: set[str] = set()
        self.status_server: StatusServer | None = None
        self._quiescence = Quiescence(*settings.quiescence.resolved(settings.mode))
        self._stop = threading.Event()
        self._hup = False
        self._retry_at: float | None = None
        self._retry_delay = 1.0
        self._force = False  # apply even without a data change (after SIGHUP, reconcile)
        self.synced_once = False
        self._initial_attempted = False
        self._next_probe = 0.0
        self._next_anti_entropy = 0.0
        self.last_result: ApplyResult | None = None

    # --- watches -------------------------------------------------------------

    def _rules(self) -> Rules:
        return Rules(
            include_warning=self.settings.consul.include_warning, allow_hostnames=self.settings.mode == "reload"
        )

    def _wait(self) -> float:
        if len(self._watches) > self.settings.consul.max_connections:
            return min(CROWDED_WAIT, self.settings.consul.wait)
        return self.settings.consul.wait

    def _start_watch(self, source: Source) -> None:
        options = WatchOptions(
            wait=self._wait,
            max_query_rate=self.settings.consul.max_query_rate,
            max_last_contact=self.settings.consul.max_last_contact,
            metrics=self.metrics,
        )
        self._watches[source.key] = Watch(source, self._events.put, options, self._gate).start()

    def _select(self, names: set[str]) -> None:
        store = self.store
        for name in sorted(names - store.selected):
            self._start_watch(HealthSource(self._client, name, self._rules()))
        for name in sorted(store.selected - names):
            watch = self._watches.pop(f"health:{name}", None)
            if watch:
                watch.stop()
            self._guard.forget(name)
            if store.services.get(name):
                # Keep the upstream, emptied: nginx.conf may still proxy to it, so removing
                # the block would fail nginx -t. It answers 502 until it comes back.
                log.info("service left the selection; its upstream is kept empty", service=name)
                store.services[name] = ()
                self._changed(name)
        store.selected = set(names)

    def _start_watches(self) -> None:
        selection = self.settings.services
        self.store.catalog_answered = not selection.tags
        if selection.tags:
            self._start_watch(CatalogSource(self._client, selection.tags))
        self._select(set(selection.names))

    def _stop_watches(self) -> None:
        for watch in self._watches.values():
            watch.stop()
        self._watches.clear()

    # --- events --------------------------------------------------------------

    def _changed(self, service: str) -> None:
        now = self._clock()
        self._quiescence.changed(now)
        self.store.changed_at.setdefault(service, now)

    def _accept(self, service: str, servers: tuple[Server, ...]) -> None:
        store = self.store
        old = store.services.get(service)
        if old is None or rendered_view(old) != rendered_view(servers):
            store.services[service] = servers
            self._changed(service)

    def _handle(self, event: Event) -> None:
        store = self.store
        now = self._clock()
        if isinstance(event, ServiceChanged):
            if event.service not in store.selected:
                return  # a watch that was just stopped
            log_rejections(event.rejections, self.metrics)
            current = store.services.get(event.service)
            if self._guard.offer(event.service, current, event.servers, now):
                self._accept(event.service, event.servers)
            elif event.service not in self._confirming:
                held = self._guard.held[event.service]
                log.warning(
                    "sharp drop held until a second read confirms it",
                    service=event.service,
                    before=len(held.current),
                    after=len(held.proposed),
                    confirm_in=self.settings.safety.drop_confirm_delay,
                )
                self.metrics.held_drops.labels(event.service, "held").inc()
        elif isinstance(event, ConfirmRead):
            self._confirming.discard(event.service)
            if event.service not in self._guard.held or event.service not in store.selected:
                return
            if event.servers is None:
                log.warning("confirming read failed; drop stays held", service=event.service, error=event.error)
                self._guard.retry_later(event.service, now)
                return
            held = self._guard.held[event.service]
            confirmed = self._guard.is_sharp(held.current, event.servers)
            log.warning(
                "sharp drop confirmed; applying" if confirmed else "sharp drop not confirmed; applying the new read",
                service=event.service,
                before=len(held.current),
                after=len(event.servers),
            )
            self.metrics.held_drops.labels(event.service, "confirmed" if confirmed else "recovered").inc()
            self._guard.confirmed(event.service)
            self._accept(event.service, event.servers)
        elif isinstance(event, CatalogChanged):
            log_rejections(event.rejections, self.metrics)
            store.catalog_answered = True
            self._select(set(self.settings.services.names) | set(event.names))
        elif isinstance(event, WatchFailed):
            self._failing_watches.setdefault(event.key, event.at)
            self.health.consul_failed(min(self._failing_watches.values()), event.error, status=event.status)
        elif isinstance(event, WatchRecovered):
            self._failing_watches.pop(event.key, None)
            if not self._failing_watches:
                self.health.consul_ok()
            else:
                self.health.consul_failing_since = min(self._failing_watches.values())

    def _confirm(self, service: str) -> None:
        """The second read for a held drop, off the main loop; its answer comes back as an event."""
        self._confirming.add(service)
        client, rules, limit = self._client, self._rules(), self.settings.consul.max_last_contact

        def read() -> None:
            try:
                answer = HealthSource(client, service, rules).fetch(index=0, wait=0.0)  # a plain read
                check_trust(answer, limit)
                servers: tuple[Server, ...] | None = health_entries(service, answer.body, rules).servers
                error = ""
            except Exception as exc:  # reported as an event; the drop stays held
                servers, error = None, str(exc)
            self._events.put(ConfirmRead(service, servers, error, time.monotonic()))

        threading.Thread(target=read, name=f"confirm {service}", daemon=True).start()

    # --- applying ------------------------------------------------------------

    def _sync(self, reason: str) -> None:
        started = self._clock()
        desired = desired_state(self.store.services)
        result = self._sink.apply(desired, reconcile=self._force)
        finished = self._clock()
        duration = round(finished - started, 4)
        self.last_result = result
        self._count(result)
        for change in result.changes:
            log.info("upstream changed", action=result.action, duration=duration, **change.summary())
        fields: dict[str, Any] = {
            "action": result.action,
            "reason": reason,
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
                for at in self.store.changed_at.values():
                    self.metrics.change_to_applied.labels(self.settings.mode).observe(max(0.0, finished - at))
            self._quiescence.reset()
            self.store.changed_at.clear()
            self._retry_at = None
            self._retry_delay = 1.0
            self._force = False
            if not self.synced_once:
                self.synced_once = True
                self._next_anti_entropy = self._clock() + self.settings.api.anti_entropy
                self._next_probe = self._clock() + self.settings.api.probe_interval
            self._notifier.status(f"in sync: {len(desired.upstreams)} upstreams ({result.action})")
        else:
            log.error("sync failed; last good state stays in force", detail=result.detail, **fields)
            self.health.apply_failed(finished, result.detail, cause=apply_failure_cause(result))
            self._quiescence.reset()
            if result.retryable:
                self._retry_at = self._clock() + self._retry_delay
                self._retry_delay = min(self._retry_delay * 2, RETRY_BACKOFF_MAX)
            self._notifier.status(f"sync {result.action}: {result.detail[:200]}")

    def _count(self, result: ApplyResult) -> None:
        self.metrics.syncs.labels(result.action).inc()
        counters = {
            "nginx_test": self.metrics.config_tests,
            "reload": self.metrics.reloads,
            "push": self.metrics.pushes,
        }
        for kind, outcome in result.steps:
            counters[kind].labels(outcome).inc()

    def verdict(self) -> Verdict:
        verdict = self.health.verdict(self._clock())
        self.metrics.healthy.set(1 if verdict.ok else 0)
        return verdict

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

    def _probe(self, now: float) -> None:
        """Anti-entropy: re-read what nginx holds when it may have moved without us."""
        api = self.settings.api
        self._next_probe = now + api.probe_interval
        due = now >= self._next_anti_entropy
        if due or self._sink.needs_reconcile():
            self._next_anti_entropy = now + api.anti_entropy
            self._force = True
            self._sync("anti-entropy" if due else "nginx state moved")

    # --- signals and config --------------------------------------------------

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
        if old.consul != new.consul or old.services != new.services:
            self._stop_watches()
            self._client.close()
            self._client = self._client_factory(new)
            self.store.selected = set()
            self._gate = threading.BoundedSemaphore(new.consul.max_connections)
            self._start_watches()
        self._force = True
        self._quiescence.changed(self._clock())
        log.info("configuration reloaded", source=str(source) if source else None)
        self._notifier.ready("configuration reloaded")

    # --- the loop ------------------------------------------------------------

    def _next_wake(self, now: float, next_watchdog: float | None) -> float:
        candidates = [now + 1.0]
        deadline = self._quiescence.deadline()
        if deadline is not None:
            candidates.append(deadline)
        if self._retry_at is not None:
            candidates.append(self._retry_at)
        if next_watchdog is not None:
            candidates.append(next_watchdog)
        if self.synced_once:
            candidates.append(self._next_probe)
        guard = self._guard.next_deadline()
        if guard is not None:
            candidates.append(guard)
        return max(0.0, min(candidates) - now)

    def run(self) -> int:
        log.info(
            "agent starting",
            mode=self.settings.mode,
            services=list(self.settings.services.names),
            tags=list(self.settings.services.tags),
            consul=self._client.base_url,
        )
        self._start_status_server()
        self._start_watches()
        self._notifier.ready("waiting for Consul")
        interval = self._notifier.watchdog_interval
        next_watchdog = self._clock() if interval else None
        try:
            while not self._stop.is_set():
                now = self._clock()
                try:
                    item: Event | _Wake | None = self._events.get(timeout=self._next_wake(now, next_watchdog))
                except queue.Empty:
                    item = None
                while item is not None:
                    if not isinstance(item, _Wake):
                        self._handle(item)
                    try:
                        item = self._events.get_nowait()
                    except queue.Empty:
                        item = None
                if self._stop.is_set():
                    break
                if self._hup:
                    self._hup = False
                    self._reload_config()
                now = self._clock()
                if interval and next_watchdog is not None and now >= next_watchdog:
                    self._notifier.watchdog()
                    next_watchdog = now + interval
                for held in self._guard.due(now):
                    if held.service not in self._confirming:
                        self._confirm(held.service)
                if not self.store.ready():
                    continue
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
        finally:
            self._notifier.stopping()
            log.info("agent stopping")
            self._stop_watches()
            self._sink.close()
            self._client.close()
            if self.status_server is not None:
                self.status_server.stop()
        return 0
