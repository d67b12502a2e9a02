"""300 services on a budget of 16 Consul connections, with real nginx and the agent as a
subprocess: the initial sync completes, a change to any one service reaches real traffic,
and the agent never holds more than 16 connections to Consul (sampled from /proc every
20 ms for the whole test). One connection per service, consul-template's way, would need
300; real Consul refuses a client past 200.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.rawhttp import ClientError, KeepAliveClient
from bench.scale_procfs import FootprintSampler
from bench.scale_stack import (
    BASE_BACKENDS,
    TAG,
    AgentConfig,
    Mode,
    ScaleAgent,
    ScaleProxy,
    instance_body,
    seed,
    service_names,
    start_backends,
)
from syncer.devconsul.server import DevConsul
from syncer.testing.backends import BackendFarm
from syncer.testing.consul import ConsulWriter
from syncer.testing.wait import wait_until
from tests.stack import mode_param

SERVICES = 300
BUDGET = 16
INSTANCES = 3

pytestmark = [pytest.mark.slow, pytest.mark.nginx]


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[BackendFarm]:
    started = start_backends(tmp_path, ["fresh"])
    yield started
    started.stop()


def served_by(port: int, service: str) -> set[str]:
    """Backends answering a few requests with Host ``service`` through nginx (or a status)."""
    client = KeepAliveClient(port, service, timeout=2.0)
    try:
        return {client.get().backend or "no backend" for _ in range(INSTANCES * 2)}
    except ClientError as exc:
        return {exc.kind}
    finally:
        client.close()


@pytest.mark.parametrize("mode", [mode_param("api"), mode_param("reload")])
def test_300_services_on_16_connections(
    mode: Mode, farm: BackendFarm, dev_consul: DevConsul, consul: ConsulWriter, tmp_path: Path
) -> None:
    names = service_names(SERVICES)
    seed(
        dev_consul,
        [instance_body(name, f"{name}-{i}", farm.ports[BASE_BACKENDS[i]]) for name in names for i in range(INSTANCES)],
    )
    proxy = ScaleProxy(mode, tmp_path, names).start()
    quiescence = (0.05, 0.5) if mode == "reload" else (0.0, 0.0)
    agent = ScaleAgent(mode, proxy, dev_consul.address, tmp_path, AgentConfig(BUDGET, quiescence)).start()
    sampler = FootprintSampler(agent.pid, dev_consul.port, interval=0.02).start()
    try:
        started = time.monotonic()

        def synced() -> bool:
            agent.check_alive()
            held = proxy.upstreams()
            return all(held.get(name, 0) == INSTANCES for name in names)

        # typically 2-10 s; the deadline leaves room for a CI machine busy with other work
        wait_until(synced, timeout=60, interval=0.2, message=f"nginx holding all {SERVICES} services")
        # the rendered file (reload) or the admin API (api) has them; traffic proves the workers do
        for name in (names[0], names[-1]):

            def on_all_three(name: str = name) -> bool:
                return served_by(proxy.port, name) == set(BASE_BACKENDS)

            wait_until(on_all_three, timeout=20, message=f"traffic to {name} on its three instances")
        synced_after = time.monotonic() - started

        # a change to any one service reaches real traffic
        service = random.choice(names)
        consul.register(service, f"{service}-fresh", farm.ports["fresh"], tags=[TAG])
        wait_until(
            lambda: served_by(proxy.port, service) == {*BASE_BACKENDS, "fresh"},
            timeout=20,
            interval=0.05,
            message=f"the new instance of {service} serving through nginx beside the other three",
        )
    finally:
        sampler.stop()
        agent.stop()
        proxy.stop()
    # the sampler saw the agent at work throughout (a broken sampler would count 0)
    samples = sampler.samples
    assert len(samples) >= 20, f"only {len(samples)} samples"
    assert samples[0].at - started < 1.0
    assert sampler.peak_connections() >= 3, "the detectors and the liveness probe were never seen"
    assert sampler.peak_connections() <= BUDGET, (
        f"{sampler.peak_connections()} connections to Consul (budget {BUDGET}); initial sync {synced_after:.1f} s"
    )
    assert dev_consul.stats()["rejected_connections"] == 0
