"""The churn driver: plays a script of Consul writes at fixed times and logs each one.

Every registration uses a fresh instance (its own backend port and name), so each
change can be told apart in the traffic: the name a response carries belongs to exactly
one registration. Deregistrations take the oldest active instance (first in, first out),
which is also how a rolling deploy replaces every instance once.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from syncer.testing.consul import ConsulWriter

Action = Literal["register", "deregister"]
SERVICE = "web"


@dataclass(frozen=True)
class Op:
    at: float  # seconds after the script starts
    action: Action


@dataclass(frozen=True)
class Write:
    """One Consul write as it happened. ``started``/``finished``: time.monotonic();
    ``wall``: time.time() read together with ``started`` (nginx's $msec is wall-clock)."""

    at: float
    action: Action
    instance: str
    started: float
    wall: float
    finished: float
    error: str | None = None


class Instances:
    """Fresh names to register (one per registration) and the active ones, oldest first."""

    def __init__(self, names: Iterable[str], ports: dict[str, int]) -> None:
        self._fresh = deque(names)
        self.ports = ports
        self.active: deque[str] = deque()

    def take_fresh(self) -> str:
        if not self._fresh:
            raise RuntimeError("the churn script needs more instances than were allocated")
        return self._fresh.popleft()


class ChurnDriver:
    def __init__(self, writer: ConsulWriter, instances: Instances) -> None:
        self.writer = writer
        self.instances = instances

    def _apply(self, action: Action) -> str:
        pool = self.instances
        if action == "register":
            name = pool.take_fresh()
            self.writer.register(SERVICE, name, pool.ports[name])
            pool.active.append(name)
        else:
            name = pool.active.popleft()
            self.writer.deregister(name)
        return name

    def register_initial(self, count: int) -> list[str]:
        return [self._apply("register") for _ in range(count)]

    def deregister_all(self) -> None:
        while self.instances.active:
            self._apply("deregister")

    def run(self, ops: Iterable[Op], start: float) -> list[Write]:
        """Each op at ``start + op.at`` (monotonic), however late the previous one finished."""
        log: list[Write] = []
        for op in ops:
            delay = start + op.at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            started, wall = time.monotonic(), time.time()
            error = None
            try:
                name = self._apply(op.action)
            except Exception as exc:  # logged and reported; the script goes on
                name, error = "?", f"{type(exc).__name__}: {exc}"
            log.append(Write(op.at, op.action, name, started, wall, time.monotonic(), error))
        return log
