"""The agent's state as a pure reducer: events in, commands out.

It holds the servers accepted per service, the selection (names from the config, services
carrying a selecting tag, and services that routing points at), the sharp-drop guard, the
hold after Consul lost its state, which watches are failing, and what changed since the
last apply. Nothing here does I/O or reads a clock: time comes in as arguments, and the
agent loop carries out the commands (watch these services, confirm that drop) and turns
the reports into log lines and metrics.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from syncer.discovery.events import (
    CatalogChanged,
    ConfirmRead,
    ConsulStateReset,
    Event,
    ServiceChanged,
    ServiceReadFailed,
    WatchFailed,
    WatchRecovered,
)
from syncer.discovery.normalize import Rejection
from syncer.model import Server, rendered_view
from syncer.planning.guard import DropGuard

# --- commands: what the loop must do ----------------------------------------------------


@dataclass(frozen=True)
class SetServices:
    """Watch exactly these services (the watcher reads new ones at once)."""

    names: frozenset[str]


@dataclass(frozen=True)
class Confirm:
    """Make the second, independent read of a held drop."""

    service: str


# --- reports: what the loop logs and counts ---------------------------------------------


@dataclass(frozen=True)
class Rejected:
    """Instances refused by validation; reported once per change, not on every answer."""

    service: str
    rejections: tuple[Rejection, ...]


@dataclass(frozen=True)
class DropHeld:
    service: str
    before: int
    after: int
    why: Literal["sharp drop", "consul state reset"]


@dataclass(frozen=True)
class DropDecided:
    service: str
    before: int
    after: int
    outcome: Literal["confirmed", "recovered", "confirm failed", "refilled", "grace over"]
    error: str = ""


@dataclass(frozen=True)
class ServiceLeft:
    service: str


@dataclass(frozen=True)
class StateReset:
    key: str
    high: int
    got: int
    hold_until: float


Command = SetServices | Confirm | Rejected | DropHeld | DropDecided | ServiceLeft | StateReset


@dataclass
class Store:
    guard: DropGuard
    configured: frozenset[str] = frozenset()
    tags: tuple[str, ...] = ()
    state_loss_grace: float = 60.0
    initial_wait: float = 10.0  # how long the first sync waits for services that do not answer
    started_at: float = 0.0

    services: dict[str, tuple[Server, ...]] = field(default_factory=dict)
    selected: frozenset[str] = frozenset()
    extra: frozenset[str] = frozenset()  # services routing points at
    tagged: frozenset[str] = frozenset()
    catalog_answered: bool = True
    answered: set[str] = field(default_factory=set)  # read successfully since selected
    unreadable: set[str] = field(default_factory=set)  # whose last read failed
    changed_at: dict[str, float] = field(default_factory=dict)  # first unapplied change per service
    failing: dict[str, float] = field(default_factory=dict)  # watch key -> failing since
    last_error: str = ""
    last_status: int | None = None  # HTTP status of the last failure (None: no answer at all)
    rejections: dict[str, tuple[Rejection, ...]] = field(default_factory=dict)
    confirming: set[str] = field(default_factory=set)
    hold_until: float | None = None
    reset_held: dict[str, tuple[Server, ...]] = field(default_factory=dict)
    revision: int = 0  # moves on every accepted change, so the loop can restart its quiescence

    # --- selection ---------------------------------------------------------------------

    def start(self, now: float) -> list[Command]:
        self.started_at = now
        self.catalog_answered = not self.tags
        return self._reselect(now)

    def reconfigure(self, names: Iterable[str], tags: Iterable[str], now: float) -> list[Command]:
        """A SIGHUP's new selection: services that leave keep an empty upstream (502).

        With new tags, the services the old tags selected stay until the catalog has
        answered for the new ones (no flap to 502 in between); syncs wait for that answer.
        """
        self.configured, new_tags = frozenset(names), tuple(tags)
        if new_tags != self.tags:
            self.tags = new_tags
            self.catalog_answered = not new_tags
            if not new_tags:
                self.tagged = frozenset()
        return self._reselect(now)

    def set_extra(self, names: Iterable[str], now: float) -> list[Command]:
        self.extra = frozenset(names)
        return self._reselect(now)

    def _reselect(self, now: float) -> list[Command]:
        wanted = self.configured | self.tagged | self.extra
        commands: list[Command] = []
        for name in sorted(self.selected - wanted):
            self.guard.forget(name)
            self.answered.discard(name)
            self.unreadable.discard(name)
            self.confirming.discard(name)
            self.reset_held.pop(name, None)
            self.rejections.pop(name, None)
            self.failing.pop(f"service:{name}", None)
            if self.services.get(name):
                # Keep the upstream, emptied: nginx.conf may still proxy to it, so removing
                # the block would fail nginx -t. It answers 502 until it comes back.
                self.services[name] = ()
                self._changed(name, now)
                commands.append(ServiceLeft(name))
        self.selected = wanted
        return [SetServices(wanted), *commands]

    # --- events ------------------------------------------------------------------------

    def handle(self, event: Event, now: float) -> list[Command]:
        if isinstance(event, ServiceChanged):
            return self._service_changed(event, now)
        if isinstance(event, ConfirmRead):
            return self._confirm_read(event, now)
        if isinstance(event, CatalogChanged):
            self.catalog_answered = True
            self.tagged = event.names
            commands: list[Command] = []
            if event.rejections and self.rejections.get("") != event.rejections:
                self.rejections[""] = event.rejections
                commands.append(Rejected("", event.rejections))
            return [*commands, *self._reselect(now)]
        if isinstance(event, ServiceReadFailed):
            if event.service in self.selected:
                self.unreadable.add(event.service)  # cannot be read: must not hold back the others
                self.failing.setdefault(f"service:{event.service}", event.at)
                self.last_error, self.last_status = event.error, event.status
            return []
        if isinstance(event, WatchFailed):
            self.failing.setdefault(event.key, event.at)
            self.last_error, self.last_status = event.error, event.status
            return []
        if isinstance(event, WatchRecovered):
            self.failing.pop(event.key, None)
            return []
        assert isinstance(event, ConsulStateReset)
        self.hold_until = now + self.state_loss_grace
        return [StateReset(event.key, event.high, event.got, self.hold_until)]

    def _service_changed(self, event: ServiceChanged, now: float) -> list[Command]:
        name = event.service
        if name not in self.selected:
            return []  # a watch that was just dropped
        commands: list[Command] = []
        self.answered.add(name)
        self.unreadable.discard(name)
        self.failing.pop(f"service:{name}", None)
        if self.rejections.get(name, ()) != event.rejections:
            self.rejections[name] = event.rejections
            if event.rejections:
                commands.append(Rejected(name, event.rejections))
        current = self.services.get(name)
        if self.holding(now) and current and self.guard.is_sharp(current, event.servers):
            # Consul lost its state and is being refilled: what is missing now is most
            # likely about to be re-registered. Hold the last good servers for the grace.
            if name not in self.reset_held:
                commands.append(DropHeld(name, len(current), len(event.servers), "consul state reset"))
            self.reset_held[name] = event.servers
            return commands
        if self.reset_held.pop(name, None) is not None:
            commands.append(DropDecided(name, len(current or ()), len(event.servers), "refilled"))
        if self.guard.offer(name, current, event.servers, now):
            self._accept(name, event.servers, now)
        elif name not in self.confirming:
            held = self.guard.held[name]
            commands.append(DropHeld(name, len(held.current), len(held.proposed), "sharp drop"))
        return commands

    def _confirm_read(self, event: ConfirmRead, now: float) -> list[Command]:
        name = event.service
        self.confirming.discard(name)
        if name not in self.guard.held or name not in self.selected:
            return []
        held = self.guard.held[name]
        if event.servers is None:
            self.guard.retry_later(name, now)
            return [DropDecided(name, len(held.current), len(held.proposed), "confirm failed", event.error)]
        confirmed = self.guard.is_sharp(held.current, event.servers)
        self.guard.confirmed(name)
        self._accept(name, event.servers, now)
        outcome: Literal["confirmed", "recovered"] = "confirmed" if confirmed else "recovered"
        return [DropDecided(name, len(held.current), len(event.servers), outcome)]

    def _accept(self, name: str, servers: tuple[Server, ...], now: float) -> None:
        old = self.services.get(name)
        if old is None or rendered_view(old) != rendered_view(servers):
            self.services[name] = servers
            self._changed(name, now)

    def _changed(self, name: str, now: float) -> None:
        self.changed_at.setdefault(name, now)
        self.revision += 1

    # --- time ----------------------------------------------------------------------------

    def holding(self, now: float) -> bool:
        return self.hold_until is not None and now < self.hold_until

    def tick(self, now: float) -> list[Command]:
        commands: list[Command] = []
        for held in self.guard.due(now):
            if held.service not in self.confirming and not self.holding(now):
                self.confirming.add(held.service)
                commands.append(Confirm(held.service))
        if self.hold_until is not None and now >= self.hold_until:
            self.hold_until = None
            for name, servers in sorted(self.reset_held.items()):
                before = len(self.services.get(name, ()))
                self._accept(name, servers, now)
                commands.append(DropDecided(name, before, len(servers), "grace over"))
            self.reset_held.clear()
        return commands

    def next_deadline(self) -> float | None:
        candidates = [t for t in (self.guard.next_deadline(), self.hold_until) if t is not None]
        if not self.ready_by_answers():
            candidates.append(self.started_at + self.initial_wait)
        return min(candidates, default=None)

    # --- what the loop asks ------------------------------------------------------------

    def ready_by_answers(self) -> bool:
        return self.catalog_answered and self.selected <= self.answered

    def ready(self, now: float) -> bool:
        """Enough for a sync: every selected service answered, or the rest cannot be read
        now, or the initial wait is over; and Consul gave at least one real answer (with
        nothing read at all there is nothing to write). Services that never answered are
        left out until they do; once applied, a service keeps its last good servers."""
        if not self.catalog_answered:
            return False
        if not self.selected:
            return True
        if not self.answered:
            return False
        return self.selected <= self.answered | self.unreadable or now >= self.started_at + self.initial_wait

    def pending(self) -> frozenset[str]:
        return self.selected - self.answered

    def consul_failing_since(self) -> float | None:
        return min(self.failing.values(), default=None)

    def snapshot(self) -> Mapping[str, tuple[Server, ...]]:
        return dict(self.services)

    def applied(self) -> dict[str, float]:
        """Forget what was pending; returns it (service -> first change) for metrics."""
        done, self.changed_at = self.changed_at, {}
        return done
