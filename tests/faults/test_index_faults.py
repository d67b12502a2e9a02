"""X-Consul-Index going backwards (a snapshot restore) or 0 (a Consul bug): the agent
re-reads instead of hanging on its old index, never busy-loops, and keeps following changes."""

from __future__ import annotations

import time

import pytest

from syncer.devconsul.server import DevConsul
from syncer.testing.backends import BackendFarm
from syncer.testing.consul import ConsulWriter
from tests.conftest import StartAgent
from tests.stack import BOTH_MODES, Stack, nudge, register, wait_event, wait_fault_hits


@pytest.mark.parametrize("stack", BOTH_MODES, indirect=True)
def test_an_index_reset_is_followed_by_a_fresh_read(
    stack: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm, start_agent: StartAgent
) -> None:
    """After the store's index drops to 1 the agent resets its index (logged), changes
    nothing, and sees the next registration at once instead of after its old index."""
    register(consul, backends, "b1")
    register(consul, backends, "b2")
    agent = start_agent(stack.agent_args(dev_consul.address))
    stack.wait_serving(backends, {"b1", "b2"})
    before = stack.fingerprint()

    dev_consul.faults.reset_index(1)
    (reset,) = wait_event(agent, "consul index went backwards; resetting")[:1]
    assert reset["got"] < reset["sent"]
    assert stack.fingerprint() == before

    register(consul, backends, "b3")
    stack.wait_serving(backends, {"b1", "b2", "b3"}, timeout=10, message="a change after the reset")


@pytest.mark.parametrize("stack", BOTH_MODES, indirect=True)
def test_index_zero_never_busy_loops(
    stack: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm, start_agent: StartAgent
) -> None:
    """Answers with X-Consul-Index: 0 make every blocking query return at once; the watch
    then asks with index 1 at most consul.max_query_rate (10/s) times a second, and its
    (valid) answers are still applied; once the index is sane again it keeps following."""
    register(consul, backends, "b1")
    start_agent(stack.agent_args(dev_consul.address))
    stack.wait_serving(backends, {"b1"})

    dev_consul.faults.force_index(0, "/v1/health/state/any")  # the check detector: a blocking query
    nudge(consul)  # ends the poll in flight; the next one (faulted) blocks on the real index
    wait_fault_hits(dev_consul, 1)
    nudge(consul)  # ...and answers with index 0: from here on every query returns at once
    start = wait_fault_hits(dev_consul, 3)
    started = time.monotonic()
    wait_fault_hits(dev_consul, start + 10)
    elapsed = time.monotonic() - started
    assert elapsed >= 0.75, f"10 queries in {elapsed:.2f}s: the token bucket (10/s, burst 2) did not hold"

    register(consul, backends, "b2")
    stack.wait_serving(backends, {"b1", "b2"}, message="a change while the index is 0")
    dev_consul.faults.clear()
    register(consul, backends, "b3")
    stack.wait_serving(backends, {"b1", "b2", "b3"}, message="a change after the fault")
