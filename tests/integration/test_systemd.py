"""The systemd unit verifies, and the agent speaks sd_notify: READY, WATCHDOG, STOPPING."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from syncer.testing.wait import wait_until
from tests.conftest import StartAgent

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "syncer.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_unit_file_verifies(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit (ExecStart pointed at this checkout's syncer)."""
    syncer = shutil.which("syncer") or str(Path(sys.executable).with_name("syncer"))
    unit = tmp_path / "syncer.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/syncer", syncer))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr
    text = UNIT.read_text()
    for directive in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "ExecReload=/bin/kill -HUP $MAINPID"):
        assert directive in text


def receive_until(sock: socket.socket, wanted: str, seen: list[str], timeout: float = 10.0, times: int = 1) -> None:
    """Read notifications into ``seen`` until ``wanted`` has arrived ``times`` times."""
    deadline = time.monotonic() + timeout
    while sum(wanted in message for message in seen) < times:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no {wanted} from the agent; got {seen}")
        sock.settimeout(remaining)
        try:
            seen.append(sock.recv(4096).decode())
        except TimeoutError:
            continue


def test_agent_notifies_ready_watchdog_and_stopping(tmp_path: Path, start_agent: StartAgent) -> None:
    """Even with Consul unreachable the agent is up (READY), alive (WATCHDOG) and stops cleanly."""
    path = tmp_path / "notify.sock"
    output = tmp_path / "upstream.conf"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        agent = start_agent(
            [
                "--consul-addr",
                "127.0.0.1:1",
                "--service",
                "web",
                "--output",
                str(output),
                "--log-format",
                "json",
                "--metrics-listen",
                "127.0.0.1:0",
            ],
            env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "300000"},
        )
        seen: list[str] = []
        receive_until(sock, "READY=1", seen)
        receive_until(sock, "WATCHDOG=1", seen)
        wait_until(lambda: "consul query failed" in agent.log(), timeout=10, message="the agent retrying Consul")
        pings = sum("WATCHDOG=1" in message for message in seen)
        receive_until(sock, "WATCHDOG=1", seen, times=pings + 2)  # still alive while Consul is down
        agent.signal(signal.SIGTERM)
        receive_until(sock, "STOPPING=1", seen)
    assert agent.stop() == 0
    assert not output.exists()  # Consul never answered: nothing was written
