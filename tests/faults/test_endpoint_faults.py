"""Api mode when the dynamic endpoint misbehaves: unreachable, slower than api.timeout, or
answering 5xx. The agent keeps retrying with backoff, nginx keeps its last good state, and
the change goes through once the endpoint answers, without any further Consul change."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from syncer.devconsul.server import DevConsul
from syncer.testing.backends import BackendFarm
from syncer.testing.consul import ConsulWriter
from tests.conftest import StartAgent
from tests.faultproxy import FaultProxy, Mode
from tests.stack import NEEDS_LUA, Stack, metric, metrics_url, register, scrape, wait_event, write_config

pytestmark = [NEEDS_LUA, pytest.mark.parametrize("stack", ["api"], indirect=True)]

EXPECTED: dict[Mode, str] = {
    "down": "unreachable: ConnectionError",
    "slow": "unreachable: ReadTimeout",
    "error": "503 simulated failure",
}


@pytest.fixture
def proxy(stack: Stack) -> Iterator[FaultProxy]:
    running = FaultProxy(stack.admin_port).start()
    yield running
    running.stop()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["down", "slow", "error"])
def test_endpoint_failures_are_retried_until_it_recovers(
    mode: Mode,
    stack: Stack,
    proxy: FaultProxy,
    dev_consul: DevConsul,
    consul: ConsulWriter,
    backends: BackendFarm,
    start_agent: StartAgent,
) -> None:
    """Failed syncs (logged with the cause, counted as failed pushes; 503 is seen through
    two of them), nginx still on {b1}; the endpoint comes back and {b1, b2} is pushed by a
    retry alone."""
    config = write_config(stack.root / "api.toml", {"api": {"timeout": 0.3}})
    register(consul, backends, "b1")
    agent = start_agent(stack.agent_args(dev_consul.address, "--config", str(config), endpoint=proxy.url))
    stack.wait_serving(backends, {"b1"})

    proxy.set(mode, delay=0.6, status=503)
    register(consul, backends, "b2")
    failures = wait_event(agent, "sync failed; last good state stays in force", count=2 if mode == "error" else 1)
    assert all(f["action"] == "failed" and EXPECTED[mode] in f["detail"] for f in failures), failures
    if mode != "slow":  # a write that timed out may still land: the agent re-reads before pushing again
        assert stack.ports() == {backends.ports["b1"]}
        assert stack.served({"b1"})
    assert metric(scrape(metrics_url(agent)), "syncer_pushes_total", outcome="failed") >= len(failures)

    proxy.set("pass")
    stack.wait_serving(backends, {"b1", "b2"}, message="pushed by a retry once the endpoint answered")
    (retried,) = wait_event(agent, "sync", reason="retry")[:1]
    # slow: the timed-out write may have landed after all; the retry then finds nothing to do
    assert retried["action"] == "pushed" or mode == "slow"
