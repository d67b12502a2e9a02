"""The agent's own signals: SIGTERM stops it cleanly (exit 0, STOPPING=1, nginx left as it
is); SIGHUP re-reads the configuration, and a new configuration that is invalid is
refused while the running one carries on."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest

from syncer.devconsul.server import DevConsul
from syncer.testing.backends import BackendFarm
from syncer.testing.consul import ConsulWriter
from tests.conftest import StartAgent
from tests.stack import BOTH_MODES, Stack, events, register, wait_event, write_config


def notifications(sock: socket.socket, until: str, timeout: float = 10.0) -> list[str]:
    """sd_notify datagrams received until one contains ``until``."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while not any(until in m for m in seen):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no {until} from the agent; got {seen}")
        sock.settimeout(remaining)
        try:
            seen.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
    return seen


@pytest.mark.parametrize("stack", BOTH_MODES, indirect=True)
def test_sigterm_exits_0_notifies_stopping_and_leaves_nginx_alone(
    stack: Stack,
    dev_consul: DevConsul,
    consul: ConsulWriter,
    backends: BackendFarm,
    start_agent: StartAgent,
    tmp_path: Path,
) -> None:
    """SIGTERM during a long poll: STOPPING=1, exit status 0 within seconds, and what nginx
    serves is untouched (an agent going away never empties upstreams)."""
    register(consul, backends, "b1")
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        agent = start_agent(stack.agent_args(dev_consul.address), env={"NOTIFY_SOCKET": str(path)})
        notifications(sock, "READY=1")
        stack.wait_serving(backends, {"b1"})
        before = stack.fingerprint()
        agent.signal(signal.SIGTERM)
        notifications(sock, "STOPPING=1")
    assert agent.proc.wait(timeout=5) == 0
    assert events(agent, "agent stopping")
    assert stack.fingerprint() == before
    assert stack.served({"b1"})


@pytest.mark.parametrize("stack", BOTH_MODES, indirect=True)
def test_sighup_rereads_the_config_and_refuses_an_invalid_one(
    stack: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm, start_agent: StartAgent
) -> None:
    """SIGHUP with a new service in the file: it is watched and synced. SIGHUP with an invalid
    file: refused with the reason, the running config (both services) keeps syncing."""
    config = write_config(stack.root / "syncer.toml", {"services": {"names": ["web"]}})
    register(consul, backends, "b1")
    register(consul, backends, "b2", service="api")
    agent = start_agent(stack.agent_args(dev_consul.address, "--config", str(config), service=False))
    stack.wait_serving(backends, {"b1"})
    assert stack.ports("api") is None

    write_config(config, {"services": {"names": ["web", "api"]}})
    agent.signal(signal.SIGHUP)
    wait_event(agent, "configuration reloaded")
    stack.wait_ports("api", {backends.ports["b2"]})

    config.write_text('[services]\nnames = ["web", "api"]\n[consul]\nwait = -5\n')
    agent.signal(signal.SIGHUP)
    (refused,) = wait_event(agent, "new configuration refused; keeping the running one")[:1]
    assert "consul.wait" in refused["error"]
    register(consul, backends, "b3")
    register(consul, backends, "b4", service="api")
    stack.wait_serving(backends, {"b1", "b3"}, message="web still synced on the old config")
    stack.wait_ports("api", {backends.ports["b2"], backends.ports["b4"]})
    assert agent.alive()
