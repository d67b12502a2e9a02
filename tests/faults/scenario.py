"""The shared story of the "answers the agent must not act on" tests."""

from __future__ import annotations

from collections.abc import Callable

from syncer.devconsul.faults import Fault
from syncer.devconsul.server import DevConsul
from syncer.testing.backends import BackendFarm
from syncer.testing.consul import ConsulWriter
from tests.conftest import StartAgent
from tests.stack import Stack, fault_hits, metrics_url, nudge, register, wait_event, wait_fault_hits, wait_metric


def change_under_fault(
    stack: Stack,
    dev: DevConsul,
    consul: ConsulWriter,
    farm: BackendFarm,
    start_agent: StartAgent,
    inject: Callable[[DevConsul], Fault],
    logged: str,
    counted: str,
    extra_args: tuple[str, ...] = (),
) -> None:
    """Sync {b1, b2}; make every health answer faulty; change Consul to {b2, b3}. The change
    is not applied (nothing written, pushed or reloaded) while the fault lasts; the failure
    is logged (``logged``) and counted (``counted`` kind); it is applied once answers are good."""
    register(consul, farm, "b1")
    register(consul, farm, "b2")
    agent = start_agent(stack.agent_args(dev.address, *extra_args))
    stack.wait_serving(farm, {"b1", "b2"})
    before = stack.fingerprint()

    inject(dev)
    nudge(consul)  # ends the long poll in flight, so the next request meets the fault
    wait_fault_hits(dev, 1)
    consul.deregister("b1")
    register(consul, farm, "b3")
    wait_fault_hits(dev, fault_hits(dev) + 1)  # answered (faultily) after the change

    assert stack.fingerprint() == before
    failures = wait_event(agent, "consul query failed")
    assert any(logged in f["error"] for f in failures), failures
    wait_metric(metrics_url(agent), "syncer_consul_errors_total", endpoint="health_service", kind=counted)

    dev.faults.clear()
    stack.wait_serving(farm, {"b2", "b3"}, message="converged once the fault stopped")
