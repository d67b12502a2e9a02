"""Consul goes away while the agent runs, then a new one starts on the same address."""

from __future__ import annotations

import pytest

from syncer.devconsul.server import DevConsul
from syncer.testing.backends import BackendFarm
from syncer.testing.consul import ConsulWriter
from tests.conftest import StartAgent
from tests.stack import BOTH_MODES, Stack, events, register, wait_event


@pytest.mark.parametrize("stack", BOTH_MODES, indirect=True)
def test_last_good_state_is_kept_and_the_agent_converges_when_consul_returns(
    stack: Stack, backends: BackendFarm, start_agent: StartAgent
) -> None:
    """While Consul is gone nothing is removed or rewritten and the agent keeps retrying;
    a restarted Consul (new index, re-registered instances) is followed at once."""
    first = DevConsul(port=0).start()
    port = first.port
    try:
        consul = ConsulWriter(first.url)
        register(consul, backends, "b1")
        register(consul, backends, "b2")
        agent = start_agent(stack.agent_args(first.address))
        stack.wait_serving(backends, {"b1", "b2"})
        before = stack.fingerprint()
    finally:
        first.stop()

    wait_event(agent, "consul query failed", count=2)
    assert stack.fingerprint() == before
    assert stack.served({"b1", "b2"})  # the last good state keeps serving

    with DevConsul(port=port) as second:
        consul = ConsulWriter(second.url)
        register(consul, backends, "b2")
        register(consul, backends, "b3")
        stack.wait_serving(backends, {"b2", "b3"}, message="converged on the new Consul")
        consul.close()
    assert agent.alive()
    # b1 left only because the new Consul says so: no sync ever emptied the upstream.
    assert all(e.get("upstreams") == 1 for e in events(agent, "sync"))
    assert not any(e.get("after") == 0 for e in events(agent, "sharp drop confirmed; applying"))
