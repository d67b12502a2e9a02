"""The agent loop in process: a real Watcher on FakeConsul, a fake sink, a fake notifier.

What the loop must do that no single part can show: reach the initial sync past the
connection budget, not let one unreadable service hold back the others, not spin while it
waits, and keep feeding the watchdog while a slow apply runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, cast

import pytest

from syncer.agent import Agent
from syncer.config import ConsulSettings, ObserveSettings, SafetySettings, ServiceSelection, Settings
from syncer.discovery.client import ConsulClient
from syncer.model import Desired
from syncer.sinks.base import ApplyResult
from syncer.systemd import Notifier
from syncer.testing.wait import wait_until
from tests.unit.fake_consul import FakeConsul, Instance

N = 120


class FakeSink:
    mode = "api"

    def __init__(self, delay: float = 0.0) -> None:
        self.applied: list[Desired] = []
        self.delay = delay
        self.lock = threading.Lock()

    def apply(self, desired: Desired, *, reconcile: bool = False) -> ApplyResult:
        time.sleep(self.delay)  # stands for nginx -t + reload
        with self.lock:
            self.applied.append(desired)
        return ApplyResult("pushed")

    def needs_reconcile(self) -> bool:
        return False

    def preview(self, desired: Desired) -> str:
        return ""

    def close(self) -> None:
        pass

    def last(self) -> Desired | None:
        with self.lock:
            return self.applied[-1] if self.applied else None

    def ports(self, service: str) -> set[int] | None:
        last = self.last()
        if last is None or service not in last.upstreams:
            return None
        return {s.port for s in last.upstreams[service].servers}


class FakeNotifier(Notifier):
    """Records watchdog pings instead of writing to systemd's socket."""

    def __init__(self, watchdog_interval: float | None = None) -> None:
        super().__init__({})
        self.watchdog_interval = watchdog_interval
        self.pings: list[float] = []

    def notify(self, message: str) -> None:
        if message.startswith("WATCHDOG=1"):
            self.pings.append(time.monotonic())


@pytest.fixture
def consul() -> FakeConsul:
    fake = FakeConsul()
    for n in range(N):
        fake.register(Instance(f"s{n}", f"s{n}-a", 1000 + n, node=f"n{n % 7}"))
    return fake


def settings(**safety: float) -> Settings:
    return Settings(
        mode="api",
        consul=ConsulSettings(max_connections=8, wait=2.0),
        services=ServiceSelection(names=tuple(f"s{n}" for n in range(N))),
        safety=replace(SafetySettings(), **safety),
        observe=ObserveSettings(listen=""),
    )


class Running:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.thread = threading.Thread(target=agent.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.agent._stop.set()  # what SIGTERM's handler does
        self.agent._events.put(None)
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture
def run(consul: FakeConsul) -> Iterator[Any]:
    started: list[Running] = []

    def go(sink: FakeSink, notifier: FakeNotifier | None = None, **safety: float) -> Running:
        agent = Agent(
            settings(**safety),
            sink_factory=lambda s: sink,
            client_factory=lambda s: cast(ConsulClient, consul),
            notifier=notifier or FakeNotifier(),
        )
        started.append(Running(agent))
        return started[-1]

    yield go
    for r in started:
        r.stop()


def test_initial_sync_past_the_connection_budget_then_a_change(consul: FakeConsul, run: Any) -> None:
    sink = FakeSink()
    run(sink)
    wait_until(lambda: len(getattr(sink.last(), "upstreams", ())) == N, message="initial sync")
    assert consul.max_in_use <= 8
    consul.register(Instance("s77", "s77-b", 5077))
    wait_until(lambda: sink.ports("s77") == {1077, 5077}, message="a change reaches the sink")


def test_an_unreadable_service_does_not_hold_back_the_others(consul: FakeConsul, run: Any) -> None:
    consul.fail_reads["s9"] = 500
    sink = FakeSink()
    run(sink, initial_wait=300.0)
    wait_until(lambda: sink.last() is not None, timeout=5, message="initial sync without s9")
    last = sink.last()
    assert last is not None
    assert "s9" not in last.upstreams
    assert len(last.upstreams) == N - 1
    consul.set_status("s10-a", "critical")
    wait_until(lambda: sink.ports("s10") == set(), timeout=5, message="an unrelated change applied")
    del consul.fail_reads["s9"]
    consul.set_status("s9-a", "passing")
    wait_until(lambda: sink.ports("s9") == {1009}, timeout=10, message="s9 joins once readable")


def test_the_loop_does_not_spin_while_it_waits(consul: FakeConsul, run: Any) -> None:
    """Not ready (every read fails): the loop sleeps between looks instead of busy-looping.

    The old loop computed a wake-up of 0 s whenever a quiescence deadline had passed while
    the store was not ready, and spun at 100 % CPU. Events may wake it (failures arrive);
    the timeouts it picks must not be zero.
    """
    for n in range(N):
        consul.fail_reads[f"s{n}"] = 500
    running = run(FakeSink())
    short = 0
    original = running.agent._next_wake

    def recording(now: float, next_watchdog: float | None) -> float:
        nonlocal short
        wake = original(now, next_watchdog)
        short += wake < 0.005
        return float(wake)

    running.agent._next_wake = recording
    deadline = time.monotonic() + 1.0
    wait_until(lambda: time.monotonic() >= deadline, message="a second passes")
    assert short == 0, f"{short} zero-length waits in one second"


def test_the_watchdog_is_fed_while_a_slow_apply_runs(consul: FakeConsul, run: Any) -> None:
    sink = FakeSink(delay=1.5)
    notifier = FakeNotifier(watchdog_interval=0.1)
    run(sink, notifier)
    wait_until(lambda: sink.last() is not None, timeout=10, message="first (slow) apply done")
    consul.set_status("s1-a", "critical")
    wait_until(lambda: sink.ports("s1") == set(), timeout=10, message="second slow apply")
    gaps = [b - a for a, b in zip(notifier.pings, notifier.pings[1:], strict=False)]
    assert gaps
    assert max(gaps) < 1.0, f"watchdog gaps {max(gaps):.2f}s during a 1.5 s apply"


def test_syncer_healthy_is_computed_at_scrape_time(consul: FakeConsul) -> None:
    """It used to change only when someone requested /healthz."""
    from prometheus_client import generate_latest  # noqa: PLC0415

    agent = Agent(
        settings(),
        sink_factory=lambda s: FakeSink(),
        client_factory=lambda s: cast(ConsulClient, consul),
        notifier=FakeNotifier(),
    )

    def scraped() -> str:
        line = next(
            x for x in generate_latest(agent.metrics.registry).decode().splitlines() if x.startswith("syncer_healthy ")
        )
        return line.split()[1]

    assert scraped() == "0.0"  # starting
    agent.health.applied()
    assert scraped() == "1.0"
    agent.store.failing["catalog:services"] = agent._clock() - 3600  # failing for an hour
    assert scraped() == "0.0"
