"""Fault injection: make the next N requests to a path misbehave the way real agents do.

Terminal kinds decide the answer (``error``, ``rate_limit``, ``empty``, ``truncate``,
``non_json``, ``down``); modifier kinds bend an otherwise normal answer (``delay``,
``known_leader``, ``last_contact``, ``index``). Several modifiers can apply to one
request; the first matching terminal fault wins. Each fault is scoped by a path
prefix (empty: every ``/v1/`` path), an optional method, and ``remaining`` (how many
matching requests it still affects; ``None`` until cleared).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

TERMINAL = ("error", "rate_limit", "empty", "truncate", "non_json", "down")
MODIFIERS = ("delay", "known_leader", "last_contact", "index")
KINDS = TERMINAL + MODIFIERS

# Consul's own text when a server has lost its leader (agent/consul/rpc.go structs.ErrNoLeader).
NO_LEADER = "rpc error making call: No cluster leader"
NOT_JSON = "<html><head><title>502 Bad Gateway</title></head><body>502 Bad Gateway</body></html>\n"


@dataclass
class Fault:
    kind: str
    path: str = ""
    method: str = ""
    remaining: int | None = None
    status: int = 500
    body: str | None = None
    content_type: str | None = None
    delay_ms: int = 0
    last_contact_ms: int = 60_000
    known_leader: bool = False
    index: int | None = None
    id: int = 0
    hits: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {', '.join(KINDS)}")
        if self.remaining is not None and self.remaining < 0:
            raise ValueError("remaining must be >= 0 or null")

    def applies_to(self, method: str, path: str) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        if self.path:
            return path.startswith(self.path)
        return path.startswith("/v1/")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        known = {f.name for f in fields(cls)} - {"id", "hits"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        return cls(**data)


@dataclass
class Plan:
    """What the faults matched by one request ask the server to do."""

    terminal: Fault | None = None
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    index: int | None = None


class FaultSet:
    """Thread-safe list of active faults, usable in-process as ``dev.faults``."""

    def __init__(
        self, on_change: Callable[[], None] = lambda: None, on_reset_index: Callable[[int], None] | None = None
    ) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._next_id = 1
        self._on_change = on_change
        self._on_reset_index = on_reset_index

    # Generic management ------------------------------------------------------------
    def add(self, fault: Fault) -> Fault:
        with self._lock:
            fault.id = self._next_id
            self._next_id += 1
            self._faults.append(fault)
        self._on_change()
        return fault

    def remove(self, fault_id: int) -> bool:
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if f.id != fault_id]
            removed = len(self._faults) != before
        self._on_change()
        return removed

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
        self._on_change()

    def active(self) -> list[Fault]:
        with self._lock:
            return [Fault(**asdict(f)) for f in self._faults]

    # Conveniences ---------------------------------------------------------------------
    def error(
        self,
        path: str = "",
        *,
        status: int = 500,
        body: str = NO_LEADER,
        remaining: int | None = None,
        method: str = "",
    ) -> Fault:
        """Answer ``status`` with a text/plain ``body`` (default: Consul's no-leader error)."""
        return self.add(Fault("error", path, method, remaining, status=status, body=body))

    def rate_limit(self, path: str = "", *, remaining: int | None = None) -> Fault:
        """Answer the exact bytes of the per-client connection cap's 429, then close."""
        return self.add(Fault("rate_limit", path, remaining=remaining))

    def empty(
        self, path: str = "", *, body: str | None = None, index: int | None = None, remaining: int | None = None
    ) -> Fault:
        """Answer 200 with an empty list/map, like a restarted follower (consul #3975)."""
        return self.add(Fault("empty", path, remaining=remaining, body=body, index=index))

    def truncate(self, path: str = "", *, remaining: int | None = None) -> Fault:
        """Announce the full Content-Length, send half the body, close the connection."""
        return self.add(Fault("truncate", path, remaining=remaining))

    def non_json(
        self, path: str = "", *, body: str = NOT_JSON, content_type: str = "text/html", remaining: int | None = None
    ) -> Fault:
        """Answer 200 with a body that is not JSON (a proxy's error page)."""
        return self.add(Fault("non_json", path, remaining=remaining, body=body, content_type=content_type))

    def down(self, path: str = "", *, remaining: int | None = None) -> Fault:
        """Close the connection without answering; without ``remaining`` it also cuts
        blocking queries already waiting on matching paths (the agent died)."""
        return self.add(Fault("down", path, remaining=remaining))

    def delay(self, ms: int, path: str = "", *, remaining: int | None = None) -> Fault:
        return self.add(Fault("delay", path, remaining=remaining, delay_ms=ms))

    def known_leader_false(self, path: str = "", *, remaining: int | None = None) -> Fault:
        return self.add(Fault("known_leader", path, remaining=remaining, known_leader=False))

    def last_contact(self, ms: int, path: str = "", *, remaining: int | None = None) -> Fault:
        return self.add(Fault("last_contact", path, remaining=remaining, last_contact_ms=ms))

    def force_index(self, value: int = 0, path: str = "", *, remaining: int | None = None) -> Fault:
        """Send ``X-Consul-Index: value`` (0 is possible here, unlike real Consul)."""
        return self.add(Fault("index", path, remaining=remaining, index=value))

    def reset_index(self, to: int) -> None:
        """Move the whole catalog back to raft index ``to`` (a snapshot restore)."""
        if self._on_reset_index is None:
            raise RuntimeError("this FaultSet is not attached to a store")
        self._on_reset_index(to)

    # Used by the HTTP layer -----------------------------------------------------------
    def take(self, method: str, path: str) -> Plan:
        """Match and consume the faults for one request."""
        plan = Plan()
        with self._lock:
            for fault in self._faults:
                if not fault.applies_to(method, path):
                    continue
                if fault.kind in TERMINAL:
                    if plan.terminal is not None:
                        continue
                    plan.terminal = Fault(**asdict(fault))
                elif fault.kind == "delay":
                    plan.delay += fault.delay_ms / 1000.0
                elif fault.kind == "known_leader":
                    plan.headers["X-Consul-KnownLeader"] = "true" if fault.known_leader else "false"
                elif fault.kind == "last_contact":
                    plan.headers["X-Consul-LastContact"] = str(fault.last_contact_ms)
                elif fault.kind == "index":
                    plan.index = fault.index or 0
                fault.hits += 1
                if fault.remaining is not None:
                    fault.remaining -= 1
            self._faults = [f for f in self._faults if f.remaining is None or f.remaining > 0]
        return plan

    def agent_down(self, method: str, path: str) -> bool:
        """Whether an open-ended ``down`` fault covers a request already in flight."""
        with self._lock:
            return any(f.kind == "down" and f.remaining is None and f.applies_to(method, path) for f in self._faults)
