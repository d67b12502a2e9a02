"""Answers that are not what Consul sends: cut short, or not JSON (a proxy's error page).
They are refused whole, nothing changes, and the agent converges once they stop."""

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

FAULTS: dict[str, tuple[Callable[[DevConsul], Fault], str]] = {
    "truncated": (lambda dev: dev.faults.truncate(HEALTH_PATH), "sent a broken answer: ChunkedEncodingError"),
    "non-json": (lambda dev: dev.faults.non_json(HEALTH_PATH), "is not JSON"),
}


@pytest.mark.parametrize("kind", FAULTS)
@pytest.mark.parametrize("stack", BOTH_MODES, indirect=True)
def test_malformed_answers_change_nothing_until_they_stop(
    kind: str,
    stack: Stack,
    dev_consul: DevConsul,
    consul: ConsulWriter,
    backends: BackendFarm,
    start_agent: StartAgent,
) -> None:
    """A truncated or non-JSON answer is a failed query: logged, counted, retried; the
    change it hid is applied once answers are whole again."""
    inject, logged = FAULTS[kind]
    change_under_fault(stack, dev_consul, consul, backends, start_agent, inject, logged, "ConsulError")
