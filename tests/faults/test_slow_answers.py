"""Consul answers slowly: within the read timeout the answer is waited for and used;
beyond it the query is abandoned, counted and retried, and nothing changes meanwhile."""

from __future__ import annotations

import pytest

from syncer.devconsul.server import DevConsul
from syncer.testing.backends import BackendFarm
from syncer.testing.consul import ConsulWriter
from tests.conftest import StartAgent
from tests.faults.scenario import change_under_fault
from tests.stack import BOTH_MODES, HEALTH_PATH, Stack, register, wait_event, write_config


@pytest.mark.parametrize("stack", BOTH_MODES, indirect=True)
def test_an_answer_slower_than_the_timeout_is_abandoned_and_retried(
    stack: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm, start_agent: StartAgent
) -> None:
    """With wait = 0.5s and connect_timeout = 0.3s a blocking read gives up after ~0.83s and
    a plain read after 0.3s; 1.2s answers time out (ReadTimeout) and change nothing."""
    config = write_config(stack.root / "slow.toml", {"consul": {"wait": 0.5, "connect_timeout": 0.3}})
    change_under_fault(
        stack,
        dev_consul,
        consul,
        backends,
        start_agent,
        lambda dev: dev.faults.delay(1200, HEALTH_PATH),
        "ReadTimeout",
        "ConsulError",
        extra_args=("--config", str(config)),
    )


@pytest.mark.parametrize("stack", BOTH_MODES, indirect=True)
def test_a_slow_answer_within_the_timeout_is_used(
    stack: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm, start_agent: StartAgent
) -> None:
    """An answer that takes a second (under the read timeout) is not an error: it is applied."""
    register(consul, backends, "b1")
    agent = start_agent(stack.agent_args(dev_consul.address))
    stack.wait_serving(backends, {"b1"})
    dev_consul.faults.delay(1000, HEALTH_PATH)
    register(consul, backends, "b2")  # the long poll in flight answers normally; the next ones are slow
    register(consul, backends, "b3")
    stack.wait_serving(backends, {"b1", "b2", "b3"})
    assert dev_consul.faults.active()[0].hits >= 1
    assert not [e for e in wait_event(agent, "sync") if e["action"] in ("failed", "rejected")]
    assert "consul query failed" not in agent.log()
