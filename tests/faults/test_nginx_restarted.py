"""Api mode: nginx crashes and restarts with nothing (no snapshot either). The agent sees
the endpoint's new generation on its own probe and pushes everything again, with no
change in Consul to prompt it: within 0.5 s of nginx answering again, with the default
probe interval."""

from __future__ import annotations

import time

import pytest

from syncer.config import ApiSettings
from syncer.devconsul.server import DevConsul
from syncer.testing.backends import BackendFarm
from syncer.testing.consul import ConsulWriter
from syncer.testing.wait import wait_until
from tests.conftest import StartAgent
from tests.stack import NEEDS_LUA, Stack, register, wait_event

pytestmark = NEEDS_LUA

RE_PUSH_WITHIN = 0.5  # seconds from nginx answering again to every upstream back


@pytest.mark.parametrize("stack", ["api"], indirect=True)
def test_a_restarted_nginx_gets_everything_again_without_help(
    stack: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm, start_agent: StartAgent
) -> None:
    """SIGKILL nginx, lose its snapshot, start it: empty endpoint, new generation; the
    agent's O(1) probe (default interval) notices and re-pushes within 0.5 s, and traffic
    flows again."""
    assert ApiSettings().probe_interval <= RE_PUSH_WITHIN / 2
    register(consul, backends, "b1")
    register(consul, backends, "b2")
    agent = start_agent(stack.agent_args(dev_consul.address))
    stack.wait_serving(backends, {"b1", "b2"})
    old = stack.admin("GET", "/summary").json()["generation"]

    stack.nginx.kill()
    stack.snapshot.unlink()
    stack.nginx.start(wait_port=stack.port)
    answering = time.monotonic()
    summary = stack.admin("GET", "/summary").json()
    assert summary["generation"] != old

    def pushed() -> bool:
        return bool(stack.admin("GET", "/summary").json()["upstreams"] >= 1)

    wait_until(pushed, timeout=5, interval=0.01, message="the agent's re-push")
    took = time.monotonic() - answering
    assert took <= RE_PUSH_WITHIN, f"re-pushed {took:.3f} s after nginx answered again"
    stack.wait_serving(backends, {"b1", "b2"}, message="re-pushed after the restart")
    wait_event(agent, "nginx restarted (new generation); re-pushing everything")
    assert len(wait_event(agent, "upstream changed", created=True, count=2)) == 2  # first start, restart
    assert stack.snapshot.exists()
