"""What the property tests found, end to end: an upstream whose healthy instances are all
backups (nginx refuses "no servers in upstream"), and service names that differ only in
case (nginx refuses "duplicate upstream")."""

from __future__ import annotations

import pytest

from syncer import cli
from syncer.devconsul.server import DevConsul
from syncer.testing.backends import BackendFarm
from syncer.testing.consul import ConsulWriter
from syncer.testing.wait import wait_until
from tests.conftest import StartAgent
from tests.stack import BOTH_MODES, Stack, events, register


@pytest.mark.parametrize("stack", BOTH_MODES, indirect=True)
def test_an_upstream_of_backups_only_is_valid_and_served_by_them(
    stack: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm, start_agent: StartAgent
) -> None:
    """Every instance tagged nginx_backup=true: nginx still accepts the config and the
    backups take the traffic (no primary is there to take it)."""
    register(consul, backends, "b1", meta={"nginx_backup": "true"})
    register(consul, backends, "b2", meta={"nginx_backup": "true"})
    agent = start_agent(stack.agent_args(dev_consul.address))
    stack.wait_serving(backends, {"b1", "b2"})
    assert not events(agent, "sync failed; last good state stays in force")
    register(consul, backends, "b3")  # a primary arrives: it takes all the traffic
    stack.wait_ports("web", {backends.ports[n] for n in ("b1", "b2", "b3")})
    wait_until(lambda: stack.served({"b3"}), timeout=15, message="the primary serves, the backups wait")


@pytest.mark.parametrize("names", [["web", "Web"], ["API", "api", "web"]])
def test_service_names_that_differ_only_in_case_are_refused(
    names: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["once", "--dry-run"]
    for name in names:
        argv += ["--service", name]
    assert cli.main(argv) == 2
    assert "only in case" in capsys.readouterr().err
