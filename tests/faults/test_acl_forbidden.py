"""A token Consul does not know (403 in ACL mode): every read fails, nothing changes, and
the agent converges once its token file holds a valid token and it is sent SIGHUP."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from syncer.devconsul.server import DevConsul
from syncer.testing.backends import BackendFarm
from syncer.testing.consul import ConsulWriter
from tests.conftest import StartAgent
from tests.stack import BOTH_MODES, Stack, metrics_url, register, wait_event, wait_metric

TOKEN = "1b4c6a4e-5f7e-4a53-9d8e-2b3f7c9d0a11"  # a test fixture


@pytest.fixture
def acl_consul() -> Iterator[DevConsul]:
    with DevConsul(port=0, acl_tokens=[TOKEN]) as dev:
        yield dev


@pytest.mark.parametrize("stack", BOTH_MODES, indirect=True)
def test_a_bad_token_is_403_and_changes_nothing(
    stack: Stack, acl_consul: DevConsul, backends: BackendFarm, start_agent: StartAgent
) -> None:
    """403 "ACL not found" is logged as a permission problem, counted, retried; nothing is
    written or pushed; a fixed token file and SIGHUP bring the agent in step."""
    consul = ConsulWriter(acl_consul.url, token=TOKEN)
    register(consul, backends, "b1")
    token_file = stack.root / "consul.token"
    token_file.write_text("not-a-known-token\n")
    before = stack.fingerprint()
    agent = start_agent(stack.agent_args(acl_consul.address, "--consul-token-file", str(token_file)))

    failures = wait_event(agent, "consul query failed", count=2)
    assert all("403 from Consul, the token lacks permission: ACL not found" in f["error"] for f in failures)
    wait_metric(metrics_url(agent), "syncer_consul_errors_total", at_least=2, kind="403")
    assert stack.fingerprint() == before

    token_file.write_text(TOKEN + "\n")
    agent.signal(signal.SIGHUP)
    wait_event(agent, "configuration reloaded")
    stack.wait_serving(backends, {"b1"}, message="in step with the valid token")
    consul.close()
