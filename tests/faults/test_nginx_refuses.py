"""Reload mode when nginx says no: `nginx -t` refuses the render, the reload command fails,
or it hangs past reload.command_timeout. The last good config stays live; failures are
logged and counted; the agent converges once nginx cooperates."""

from __future__ import annotations

import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncer.devconsul.server import DevConsul
from syncer.testing.backends import BackendFarm
from syncer.testing.consul import ConsulWriter
from syncer.testing.wait import wait_until
from tests.conftest import StartAgent
from tests.stack import NEEDS_NGINX, Stack, metric, metrics_url, register, scrape, wait_event, write_config

pytestmark = NEEDS_NGINX


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.fixture
def leftovers() -> Iterator[list[Path]]:
    """pid files of helper processes a test's scripts start; whatever is still alive is killed."""
    files: list[Path] = []
    yield files
    for path in files:
        if path.exists() and pid_alive(pid := int(path.read_text())):
            os.kill(pid, signal.SIGKILL)


def test_nginx_t_refusal_keeps_the_previous_file(
    stack: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm, start_agent: StartAgent
) -> None:
    """An instance nginx cannot use (a name that does not resolve) makes `nginx -t` fail: the
    previous bytes are put back, nginx is not reloaded, the refusal is logged and counted."""
    register(consul, backends, "b1")
    agent = start_agent(stack.agent_args(dev_consul.address))
    stack.wait_serving(backends, {"b1"})
    good, workers = stack.upstream_conf.read_bytes(), stack.workers()

    consul.register("web", "bad", backends.ports["b2"], address="no-such-host.invalid")
    (failed,) = wait_event(agent, "sync failed; last good state stays in force")[:1]
    assert failed["action"] == "rejected"
    assert "nginx -t refused the new file, previous kept" in failed["detail"]
    assert "no-such-host.invalid" in failed["detail"]
    assert stack.upstream_conf.read_bytes() == good
    assert stack.workers() == workers
    assert stack.served({"b1"})
    samples = scrape(metrics_url(agent))
    assert metric(samples, "syncer_nginx_tests_total", outcome="refused") >= 1
    assert metric(samples, "syncer_syncs_total", outcome="rejected") >= 1

    consul.deregister("bad")
    register(consul, backends, "b3")
    stack.wait_serving(backends, {"b1", "b3"})


def test_a_failing_reload_is_retried_until_it_works(
    stack: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm, start_agent: StartAgent
) -> None:
    """The reload command fails: nginx keeps its running config, the agent retries with
    backoff and reloads once the command works again, without any further Consul change."""
    flag = stack.root / "refuse-reload"
    reload = script(
        stack.root / "reload.sh",
        f'if [ -e "{flag}" ]; then echo "reload refused (test)" >&2; exit 3; fi\n'
        f"exec {' '.join(stack.nginx.base_args)} -s reload\n",
    )
    register(consul, backends, "b1")
    agent = start_agent(stack.agent_args(dev_consul.address, "--reload-command", str(reload)))
    stack.wait_serving(backends, {"b1"})

    flag.touch()
    register(consul, backends, "b2")
    failures = wait_event(agent, "sync failed; last good state stays in force", count=2)
    assert all(f["action"] == "failed" and "reload refused (test)" in f["detail"] for f in failures)
    assert stack.served({"b1"})  # nginx still runs the last good config
    assert metric(scrape(metrics_url(agent)), "syncer_reloads_total", outcome="failed") >= 2

    flag.unlink()
    stack.wait_serving(backends, {"b1", "b2"}, message="the retried reload went through")
    assert wait_event(agent, "sync", action="reloaded", reason="retry")


def test_a_hanging_reload_is_killed_with_its_children_and_retried(
    stack: Stack,
    dev_consul: DevConsul,
    consul: ConsulWriter,
    backends: BackendFarm,
    start_agent: StartAgent,
    leftovers: list[Path],
) -> None:
    """A reload command still running after reload.command_timeout is killed, children
    included (nothing is left running), reported as failed and retried."""
    flag, child = stack.root / "hang-reload", stack.root / "child.pid"
    leftovers.append(child)
    reload = script(
        stack.root / "reload.sh",
        f'if [ -e "{flag}" ]; then sleep 60 & echo $! > "{child}"; wait; fi\n'
        f"exec {' '.join(stack.nginx.base_args)} -s reload\n",
    )
    config = write_config(stack.root / "timeout.toml", {"reload": {"command_timeout": 0.5}})
    register(consul, backends, "b1")
    agent = start_agent(stack.agent_args(dev_consul.address, "--config", str(config), "--reload-command", str(reload)))
    stack.wait_serving(backends, {"b1"})

    flag.touch()
    register(consul, backends, "b2")
    (failed,) = wait_event(agent, "sync failed; last good state stays in force", timeout=10)[:1]
    assert failed["action"] == "failed"
    assert "did not complete" in failed["detail"]
    assert "timed out after 0.5s" in failed["detail"]
    pid = int(child.read_text())
    wait_until(lambda: not pid_alive(pid), timeout=5, message="the hung reload's child process killed")
    assert stack.served({"b1"})

    flag.unlink()
    stack.wait_serving(backends, {"b1", "b2"}, message="the retried reload went through")
