"""Api mode: nginx crashes and restarts with nothing (no snapshot either). The agent sees
the endpoint's new generation on its own probe and pushes everything again, with no
change in Consul to prompt it."""

from __future__ import annotations

import pytest

from syncer.devconsul.server import DevConsul
from syncer.testing.backends import BackendFarm
from syncer.testing.consul import ConsulWriter
from tests.conftest import StartAgent
from tests.stack import NEEDS_LUA, Stack, register, wait_event, write_config

pytestmark = NEEDS_LUA


@pytest.mark.parametrize("stack", ["api"], indirect=True)
def test_a_restarted_nginx_gets_everything_again_without_help(
    stack: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm, start_agent: StartAgent
) -> None:
    """SIGKILL nginx, lose its snapshot, start it: empty endpoint, new generation; within a
    few probe intervals the agent has re-pushed and traffic flows again."""
    config = write_config(stack.root / "probe.toml", {"api": {"probe_interval": 0.2}})
    register(consul, backends, "b1")
    register(consul, backends, "b2")
    agent = start_agent(stack.agent_args(dev_consul.address, "--config", str(config)))
    stack.wait_serving(backends, {"b1", "b2"})
    old = stack.admin("GET", "/upstreams").json()["generation"]

    stack.nginx.kill()
    stack.snapshot.unlink()
    stack.nginx.start(wait_port=stack.port)
    assert stack.admin("GET", "/upstreams").json()["generation"] != old

    stack.wait_serving(backends, {"b1", "b2"}, message="re-pushed after the restart")
    wait_event(agent, "nginx restarted (new generation); re-pushing everything")
    assert len(wait_event(agent, "upstream changed", created=True, count=2)) == 2  # first start, restart
    assert stack.snapshot.exists()
