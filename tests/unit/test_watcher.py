"""The multiplexed Watcher, in process, against FakeConsul: which services it re-reads, on
how many connections, and what it tells the agent."""

from __future__ import annotations

import queue
import random
import time
from collections.abc import Iterator
from typing import Any, cast

import pytest

from syncer.discovery.client import ConsulClient
from syncer.discovery.events import (
    ConfirmRead,
    ConsulStateReset,
    ServiceChanged,
    ServiceReadFailed,
    WatchFailed,
    WatchRecovered,
)
from syncer.discovery.normalize import Rules
from syncer.discovery.watcher import LIVENESS_KEY, Watcher, WatcherOptions
from syncer.testing.wait import wait_until
from tests.unit.fake_consul import FakeConsul, Instance

RULES = Rules(include_warning=False, allow_hostnames=False)


class Events:
    def __init__(self) -> None:
        self.q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.seen: list[Any] = []

    def put(self, event: Any) -> None:
        self.q.put(event)

    def drain(self) -> list[Any]:
        while True:
            try:
                self.seen.append(self.q.get_nowait())
            except queue.Empty:
                return self.seen

    def latest(self, service: str) -> ServiceChanged | None:
        changes = [e for e in self.drain() if isinstance(e, ServiceChanged) and e.service == service]
        return changes[-1] if changes else None

    def ports(self, service: str) -> set[int] | None:
        last = self.latest(service)
        return None if last is None else {s.port for s in last.servers}


@pytest.fixture
def consul() -> FakeConsul:
    fake = FakeConsul()
    for n in range(30):
        fake.register(Instance(f"s{n}", f"s{n}-a", 1000 + n))
    return fake


@pytest.fixture
def events() -> Events:
    return Events()


def start(consul: FakeConsul, events: Events, **options: Any) -> Watcher:
    opts = WatcherOptions(**{"max_connections": 6, "wait": 2.0, "explain_window": 0.2, **options})
    watcher = Watcher(cast(ConsulClient, consul), events.put, opts, rng=random.Random(1))
    return watcher.start()


@pytest.fixture
def watcher(consul: FakeConsul, events: Events) -> Iterator[Watcher]:
    w = start(consul, events)
    w.set_services([f"s{n}" for n in range(30)], RULES)
    wait_until(lambda: all(events.latest(f"s{n}") for n in range(30)), message="every service read once")
    yield w
    w.stop()
    w.join()


def test_thirty_services_on_six_connections(watcher: Watcher, consul: FakeConsul) -> None:
    """Every service answered, and never more connections than the budget."""
    assert consul.max_in_use <= 6


def test_a_check_flip_rereads_only_that_service(watcher: Watcher, consul: FakeConsul, events: Events) -> None:
    consul.register(Instance("s3", "s3-b", 2003))
    wait_until(lambda: events.ports("s3") == {1003, 2003}, message="s3-b joins")
    wait_until(lambda: consul.requests.get("health/state/any", 0) >= 3, message="detector re-armed")
    before = {f"s{n}": consul.reads(f"s{n}") for n in range(30)}
    consul.set_status("s3-b", "critical")
    wait_until(lambda: events.ports("s3") == {1003}, message="s3-b leaves")
    after = {f"s{n}": consul.reads(f"s{n}") for n in range(30)}
    assert {n for n in after if after[n] != before[n]} == {"s3"}


def test_a_port_change_without_a_check_change_is_found(watcher: Watcher, consul: FakeConsul, events: Events) -> None:
    """Only the catalog moves: an unexplained move sweeps every service once."""
    consul.move("s7-a", 9007)
    wait_until(lambda: events.ports("s7") == {9007}, message="s7 moved")


def test_a_node_check_marks_every_service_on_the_node(watcher: Watcher, consul: FakeConsul, events: Events) -> None:
    consul.set_node("n1", "passing")
    wait_until(lambda: consul.requests.get("health/state/any", 0) >= 3, message="detector saw the node")
    consul.set_node("n1", "critical")
    wait_until(lambda: all(events.ports(f"s{n}") == set() for n in range(30)), message="node down empties all")


def test_an_unwatched_service_goes_quiet(watcher: Watcher, consul: FakeConsul, events: Events) -> None:
    watcher.set_services([f"s{n}" for n in range(1, 30)], RULES)
    events.drain()
    events.seen.clear()
    consul.set_status("s0-a", "critical")
    consul.set_status("s1-a", "critical")
    wait_until(lambda: events.ports("s1") == set(), message="s1 still watched")
    assert events.latest("s0") is None


def test_a_service_that_cannot_be_read_fails_alone_and_recovers(
    watcher: Watcher, consul: FakeConsul, events: Events
) -> None:
    consul.fail_reads["s5"] = 500
    consul.set_status("s5-a", "critical")
    consul.set_status("s6-a", "critical")
    wait_until(lambda: events.ports("s6") == set(), message="s6 applied despite s5 failing")
    wait_until(
        lambda: any(isinstance(e, ServiceReadFailed) and e.service == "s5" for e in events.drain()),
        message="s5 failure reported",
    )
    del consul.fail_reads["s5"]
    wait_until(lambda: events.ports("s5") == set(), timeout=5, message="s5 read again after its backoff")
    assert any(isinstance(e, WatchRecovered) and e.key == "service:s5" for e in events.drain())


def test_consul_losing_its_state_is_reported(watcher: Watcher, consul: FakeConsul, events: Events) -> None:
    for n in range(30):
        consul.set_status(f"s{n}-a", "passing")  # move the indexes well past where a restart lands
    consul.restart_empty()
    wait_until(lambda: any(isinstance(e, ConsulStateReset) for e in events.drain()), message="index went backwards")


def test_liveness_failure_and_recovery(consul: FakeConsul, events: Events) -> None:
    w = start(consul, events, liveness_interval=0.1)
    try:
        w.set_services(["s1"], RULES)
        wait_until(lambda: events.latest("s1") is not None, message="s1 read")
        consul.down = True
        wait_until(
            lambda: any(isinstance(e, WatchFailed) and e.key == LIVENESS_KEY for e in events.drain()),
            message="liveness failure",
        )
        consul.down = False
        wait_until(
            lambda: any(isinstance(e, WatchRecovered) and e.key == LIVENESS_KEY for e in events.drain()),
            message="liveness recovery",
        )
    finally:
        w.stop()


def test_a_budget_too_small_is_refused(consul: FakeConsul, events: Events) -> None:
    with pytest.raises(ValueError, match="leaves no connection"):
        Watcher(cast(ConsulClient, consul), events.put, WatcherOptions(max_connections=3))


def test_confirm_answers_with_a_fresh_read(watcher: Watcher, consul: FakeConsul, events: Events) -> None:
    watcher.confirm("s2")
    wait_until(
        lambda: any(isinstance(e, ConfirmRead) and e.servers is not None for e in events.drain()),
        message="confirm read",
    )


def test_a_change_is_read_at_once_not_on_a_readers_idle_tick(
    watcher: Watcher, consul: FakeConsul, events: Events
) -> None:
    """A queued read wakes a reader: the notify must not go to the timer thread, which
    shares the condition and would leave the read for a reader's 1 s idle re-check."""
    slowest = 0.0
    for n in range(12):
        service = f"s{n}"

        def rearmed(at_least: int = 2 + n) -> bool:
            return consul.requests.get("health/state/any", 0) >= at_least

        def emptied(name: str = service) -> bool:
            return events.ports(name) == set()

        wait_until(rearmed, message="detector re-armed")
        started = time.monotonic()
        consul.set_status(f"{service}-a", "critical")
        wait_until(emptied, interval=0.005, message=f"{service} emptied")
        slowest = max(slowest, time.monotonic() - started)
    assert slowest < 0.5
