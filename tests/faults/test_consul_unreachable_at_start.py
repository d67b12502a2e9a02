"""Consul is not there when the agent starts: it waits, retries with backoff and jitter,
touches nothing, and converges as soon as Consul answers."""

from __future__ import annotations

import pytest

from syncer.devconsul.server import DevConsul
from syncer.testing.backends import BackendFarm
from syncer.testing.consul import ConsulWriter
from syncer.testing.ports import free_port
from tests.conftest import StartAgent
from tests.stack import BOTH_MODES, Stack, register, wait_event


@pytest.mark.parametrize("stack", BOTH_MODES, indirect=True)
def test_agent_waits_with_backoff_and_jitter_then_converges(
    stack: Stack, backends: BackendFarm, start_agent: StartAgent
) -> None:
    """Retries back off exponentially with jitter; nothing is written or pushed meanwhile;
    the first answer from Consul is applied."""
    port = free_port()  # nothing listens here yet
    before = stack.fingerprint()
    agent = start_agent(stack.agent_args(f"127.0.0.1:{port}"))
    failures = wait_event(agent, "consul query failed", count=2, watch="health:state")[:2]

    assert [f["attempt"] for f in failures] == [1, 2]
    for failure in failures:
        base = 0.25 * 2 ** (failure["attempt"] - 1)  # syncer.retry.backoff(0.25, 60, jitter=0.25)
        assert base <= failure["retry_in"] <= base + 0.25 + 0.01, failure
        assert "unreachable" in failure["error"]
    assert any(f["retry_in"] != 0.25 * 2 ** (f["attempt"] - 1) for f in failures), "no jitter"
    assert stack.fingerprint() == before
    assert not stack.snapshot.exists()

    with DevConsul(port=port) as dev:
        consul = ConsulWriter(dev.url)
        register(consul, backends, "b1")
        register(consul, backends, "b2")
        stack.wait_serving(backends, {"b1", "b2"}, message="converged once Consul answered")
        consul.close()
    assert agent.alive()
