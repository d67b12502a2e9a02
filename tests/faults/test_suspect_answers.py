"""Answers the agent must not act on: 5xx, the connection cap's 429, no known leader, a
server far behind its leader. Nothing changes while they last; the agent converges once
they stop."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from syncer.devconsul.faults import Fault
from syncer.devconsul.server import DevConsul
from syncer.testing.backends import BackendFarm
from syncer.testing.consul import ConsulWriter
from tests.conftest import StartAgent
from tests.faults.scenario import change_under_fault
from tests.stack import BOTH_MODES, HEALTH_PATH, Stack

FAULTS: dict[str, tuple[Callable[[DevConsul], Fault], str, str]] = {
    # name: (inject, what the agent logs, the error kind counted in syncer_consul_errors_total)
    # (500 stands for every 5xx: any status but 200 takes the same path)
    "500-no-leader": (lambda dev: dev.faults.error(HEALTH_PATH), "500 from Consul: rpc error", "500"),
    "429-connection-cap": (lambda dev: dev.faults.rate_limit(HEALTH_PATH), "429 Too Many Requests", "429"),
    "known-leader-false": (
        lambda dev: dev.faults.known_leader_false(HEALTH_PATH),
        "X-Consul-KnownLeader: false",
        "SuspectAnswer",
    ),
    "last-contact-60s": (
        lambda dev: dev.faults.last_contact(60_000, HEALTH_PATH),
        "last heard from the leader 60000 ms ago",
        "SuspectAnswer",
    ),
}


@pytest.mark.parametrize("kind", FAULTS)
@pytest.mark.parametrize("stack", BOTH_MODES, indirect=True)
def test_suspect_answers_change_nothing_until_they_stop(
    kind: str,
    stack: Stack,
    dev_consul: DevConsul,
    consul: ConsulWriter,
    backends: BackendFarm,
    start_agent: StartAgent,
) -> None:
    """A change made while every answer is faulty is not applied; it is logged and counted,
    and applied once answers are good again."""
    inject, logged, counted = FAULTS[kind]
    change_under_fault(stack, dev_consul, consul, backends, start_agent, inject, logged, counted)
