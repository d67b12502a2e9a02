"""The agent killed with SIGKILL in the middle of a sync: no partial file is left, and the
next agent converges nginx, even when the file on disk already holds the new state."""

from __future__ import annotations

import os
import signal
import stat

import pytest

from syncer.devconsul.server import DevConsul
from syncer.testing.backends import BackendFarm
from syncer.testing.consul import ConsulWriter
from syncer.testing.wait import wait_until
from tests.conftest import StartAgent
from tests.stack import NEEDS_LUA, NEEDS_NGINX, Stack, events, register, wait_event


@NEEDS_NGINX
def test_sigkill_during_nginx_t_then_restart_converges(
    stack: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm, start_agent: StartAgent
) -> None:
    """Killed while `nginx -t` checks the new file: the file is whole (old or new, never
    partial, no temp file left); the next agent reloads nginx onto the current state."""
    flag, started = stack.root / "slow-test", stack.root / "test.pid"
    test = stack.root / "test.sh"
    test.write_text(
        "#!/bin/sh\n"
        f'if [ -e "{flag}" ]; then echo $$ > "{started}"; exec sleep 60; fi\n'
        f"exec {' '.join(stack.nginx.base_args)} -t -q\n"
    )
    test.chmod(test.stat().st_mode | stat.S_IXUSR)
    args = stack.agent_args(dev_consul.address, "--test-command", str(test))
    register(consul, backends, "b1")
    first = start_agent(args)
    stack.wait_serving(backends, {"b1"})

    flag.touch()
    register(consul, backends, "b2")
    pid = int(wait_until(lambda: started.read_text().strip() if started.exists() else None, message="nginx -t running"))
    first.proc.kill()
    first.proc.wait(timeout=10)
    os.kill(pid, signal.SIGKILL)  # the orphaned test command (its pid file says which)
    flag.unlink()

    leftovers = [p.name for p in stack.upstream_conf.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    assert stack.nginx.test_config().returncode == 0  # a whole, valid file
    assert stack.served({"b1"})  # nginx was never reloaded onto the untested file

    second = start_agent(args)
    stack.wait_serving(backends, {"b1", "b2"}, message="the next agent converged nginx")
    assert second.alive()


@NEEDS_LUA
@pytest.mark.parametrize("stack", ["api"], indirect=True)
def test_sigkill_then_restart_converges_without_redundant_pushes(
    stack: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm, start_agent: StartAgent
) -> None:
    """Api mode: the next agent reads what the endpoint holds, pushes what changed while no
    agent ran, and leaves unchanged upstreams' versions alone."""
    register(consul, backends, "b1")
    args = stack.agent_args(dev_consul.address)
    first = start_agent(args)
    stack.wait_serving(backends, {"b1"})
    first.proc.kill()
    first.proc.wait(timeout=10)

    version = stack.admin("GET", "/upstreams/web").json()["version"]
    again = start_agent(args)
    wait_event(again, "sync", action="unchanged", reason="initial")
    assert stack.admin("GET", "/upstreams/web").json()["version"] == version
    again.proc.kill()
    again.proc.wait(timeout=10)

    register(consul, backends, "b2")
    third = start_agent(args)
    stack.wait_serving(backends, {"b1", "b2"}, message="changes made while no agent ran")
    assert stack.admin("GET", "/upstreams/web").json()["version"] == version + 1
    assert not events(third, "sync failed; last good state stays in force")
