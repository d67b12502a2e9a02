"""Api mode end to end: dev Consul → agent → the Lua endpoint inside a real nginx, with
real traffic, and no reload ever."""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from syncer.devconsul.server import DevConsul
from syncer.testing.backends import BackendFarm
from syncer.testing.consul import ConsulWriter
from syncer.testing.wait import wait_until
from tests.conftest import StartAgent, hits, needs_lua, needs_nginx
from tests.stack import Stack, make_stack, register

pytestmark = [needs_nginx, needs_lua]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Stack]:
    stack = make_stack("api", tmp_path / "api", worker_processes=2).start()
    yield stack
    stack.stop()


def test_traffic_follows_add_remove_weight_and_check_failure(
    env: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm, start_agent: StartAgent
) -> None:
    register(consul, backends, "b1")
    check_b2 = register(consul, backends, "b2")
    agent = start_agent(env.agent_args(dev_consul.address))
    workers = {p.pid for p in env.nginx.workers()}
    wait_until(lambda: env.served({"b1", "b2"}), timeout=15, message="initial push")

    register(consul, backends, "b3")
    wait_until(lambda: env.served({"b1", "b2", "b3"}), timeout=10, message="b3 added")

    register(consul, backends, "b3", weights={"Passing": 4, "Warning": 1})
    wait_until(lambda: hits(env.port, 60)["b3"] == 40, timeout=10, message="b3 weighs 4 of 6")

    consul.check(check_b2, "critical")
    wait_until(lambda: env.served({"b1", "b3"}), timeout=10, message="b2 out on a failed check")

    consul.deregister("b1")
    wait_until(lambda: env.served({"b3"}), timeout=10, message="b1 removed")

    assert {p.pid for p in env.nginx.workers()} == workers  # not one reload
    upstream = env.admin("GET", "/upstreams/web").json()
    assert [s["port"] for s in upstream["servers"]] == [backends.ports["b3"]]
    # The snapshot is written off the apply path, so it may trail the push briefly.
    wait_until(
        lambda: json.loads(env.snapshot.read_text())["upstreams"]["web"]["servers"] == upstream["servers"],
        timeout=5,
        message="the snapshot holds what nginx holds",
    )
    assert agent.alive()


@dataclass
class Timeline:
    """Which instances Consul held healthy, from when (monotonic seconds)."""

    changes: list[tuple[float, frozenset[str]]] = field(default_factory=list)

    def healthy_between(self, name: str, start: float, end: float) -> bool:
        state: frozenset[str] = frozenset()
        for at, healthy in self.changes:
            if at > end:
                break
            if at <= start:
                state = healthy
            elif name in healthy:
                return True
        return name in state


@dataclass
class Load:
    """Keep-alive HTTP clients in threads, recording (sent, received, status, backend)."""

    port: int
    stop: threading.Event = field(default_factory=threading.Event)
    per_thread: list[list[tuple[float, float, int, str]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(len(results) for results in self.per_thread)

    @property
    def results(self) -> list[tuple[float, float, int, str]]:
        return [r for results in self.per_thread for r in results]

    def worker(self, results: list[tuple[float, float, int, str]]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        while not self.stop.is_set():
            sent = time.monotonic()
            try:
                conn.request("GET", "/", headers={"Host": "web"})
                response = conn.getresponse()
                response.read()
                results.append((sent, time.monotonic(), response.status, response.getheader("X-Backend") or ""))
            except (OSError, http.client.HTTPException) as exc:
                self.errors.append(repr(exc))  # list.append is atomic under the GIL
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        conn.close()

    def start(self, threads: int) -> list[threading.Thread]:
        started = []
        for _ in range(threads):
            results: list[tuple[float, float, int, str]] = []
            self.per_thread.append(results)
            thread = threading.Thread(target=self.worker, args=(results,))
            thread.start()
            started.append(thread)
        return started


@pytest.mark.slow
def test_zero_failed_requests_under_load_and_churn(
    env: Stack, dev_consul: DevConsul, consul: ConsulWriter, tmp_path: Path, start_agent: StartAgent
) -> None:
    """≥ 20,000 requests during ≥ 50 instance changes: none fails, each lands on an instance
    Consul held healthy at that moment or within the propagation window."""
    names = [f"c{i}" for i in range(8)]
    farm = BackendFarm(tmp_path / "churn-backends", names).start()
    try:
        healthy = set(names[:4])
        for name in healthy:
            consul.register("web", name, farm.ports[name])
        timeline = Timeline([(time.monotonic(), frozenset(healthy))])
        start_agent(env.agent_args(dev_consul.address))
        wait_until(lambda: env.served(healthy, 40), timeout=15, message="initial push")

        load = Load(env.port)
        threads = load.start(4)
        rng = random.Random(42)
        changes = 0
        try:
            for _ in range(60):
                spare = sorted(set(names) - healthy)
                # Timestamps err towards "healthy": a leaving instance counts as healthy
                # until its deregistration has returned, a joining one from just before its
                # registration is sent (the push can reach nginx before the write returns).
                if len(healthy) > 2 and (not spare or rng.random() < 0.5):
                    leaving = rng.choice(sorted(healthy))
                    healthy.discard(leaving)
                    consul.deregister(leaving)
                    timeline.changes.append((time.monotonic(), frozenset(healthy)))
                else:
                    joining = rng.choice(spare)
                    healthy.add(joining)
                    timeline.changes.append((time.monotonic(), frozenset(healthy)))
                    weights = {"Passing": rng.randint(1, 3), "Warning": 1}
                    consul.register("web", joining, farm.ports[joining], weights=weights)
                changes += 1
                load.stop.wait(0.1)  # the churn rate itself, not a synchronisation
            wait_until(lambda: load.count >= 20_000, timeout=90, interval=0.2, message="20,000 requests")
        finally:
            load.stop.set()
            for thread in threads:
                thread.join(10)
    finally:
        farm.stop()

    assert changes >= 50
    assert len(load.results) >= 20_000, len(load.results)
    assert load.errors == []
    statuses = Counter(status for _, _, status, _ in load.results)
    assert statuses == Counter({200: len(load.results)}), statuses
    window = 1.0  # propagation window: far above the measured p99 (see bench/), far below a reload cycle
    stray = [
        (sent, backend)
        for sent, received, _, backend in load.results
        if not timeline.healthy_between(backend, sent - window, received)
    ]
    assert stray == [], f"{len(stray)} requests landed on instances not healthy within {window}s: {stray[:5]}"
    assert len(env.nginx.workers()) == 2


def test_nginx_reload_keeps_the_state(
    env: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm, start_agent: StartAgent
) -> None:
    """`nginx -s reload` keeps generation, versions and servers: nothing to re-push."""
    register(consul, backends, "b1")
    register(consul, backends, "b2")
    agent = start_agent(env.agent_args(dev_consul.address))
    wait_until(lambda: env.served({"b1", "b2"}), timeout=15, message="initial push")
    before = env.admin("GET", "/upstreams").json()
    env.nginx.reload()
    assert env.served({"b1", "b2"})
    assert env.admin("GET", "/upstreams").json() == before
    assert "nginx restarted" not in agent.log()


def test_a_restarted_nginx_is_detected_and_repushed(
    env: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm, start_agent: StartAgent
) -> None:
    """nginx stops; Consul changes meanwhile; nginx starts from the (now stale) snapshot, and
    the agent notices the new generation and re-pushes without any further Consul change."""
    register(consul, backends, "b1")
    register(consul, backends, "b2")
    agent = start_agent(env.agent_args(dev_consul.address))
    wait_until(lambda: env.served({"b1", "b2"}), timeout=15, message="initial push")
    old_generation = env.admin("GET", "/upstreams").json()["generation"]

    env.nginx.stop()
    consul.deregister("b1")
    register(consul, backends, "b3")
    wait_until(lambda: "sync failed" in agent.log(), timeout=10, message="the agent sees nginx gone")

    env.nginx.start(wait_port=env.port)
    assert env.admin("GET", "/upstreams").json()["generation"] != old_generation
    wait_until(lambda: env.served({"b2", "b3"}), timeout=15, message="re-pushed after the restart")
    assert agent.alive()


def test_a_killed_worker_comes_back_serving_the_current_set(
    env: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm, start_agent: StartAgent
) -> None:
    register(consul, backends, "b1")
    start_agent(env.agent_args(dev_consul.address))
    wait_until(lambda: env.served({"b1"}), timeout=15, message="initial push")
    register(consul, backends, "b4")
    wait_until(lambda: env.served({"b1", "b4"}), timeout=10, message="b4 added")
    victim = env.nginx.workers()[0].pid
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: len(env.nginx.workers()) == 2 and victim not in {p.pid for p in env.nginx.workers()},
        timeout=10,
        message="the master respawned the worker",
    )
    for _ in range(5):  # many connections, so both workers answer
        assert env.served({"b1", "b4"}, count=20)


def test_once_dry_run_prints_the_per_upstream_diff(
    env: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm
) -> None:
    register(consul, backends, "b1")
    register(consul, backends, "b2")
    before = env.admin("GET", "/upstreams").json()
    done = subprocess.run(
        [sys.executable, "-m", "syncer", "once", "--dry-run", *env.agent_args(dev_consul.address)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "upstream web: would create 2 servers (+2 -0 ~0)" in done.stdout
    assert f"  + 127.0.0.1:{backends.ports['b1']} weight=1" in done.stdout
    assert env.admin("GET", "/upstreams").json() == before
