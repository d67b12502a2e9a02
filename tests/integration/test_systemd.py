"""The systemd unit verifies, grants only capabilities its system-call filter leaves usable,
scores what the README says, and the agent speaks sd_notify: READY, WATCHDOG, STOPPING.
(tests/install/ verifies the unit as scripts/install.sh installs it.)"""

from __future__ import annotations

import os
import re
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
README = UNIT.parents[1] / "README.md"
NEEDS_SYSTEMD_ANALYZE = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")


def directives(name: str) -> list[str]:
    """Every value of ``name=`` in the unit, in order."""
    return re.findall(rf"(?m)^{name}=(.*)$", UNIT.read_text())


@NEEDS_SYSTEMD_ANALYZE
def test_unit_file_verifies(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit (ExecStart pointed at this checkout's syncer,
    the Documentation= man page generated into a MANPATH folder)."""
    syncer = shutil.which("syncer") or str(Path(sys.executable).with_name("syncer"))
    unit = tmp_path / "syncer.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/syncer", syncer))
    man1 = tmp_path / "man" / "man1"
    man1.mkdir(parents=True)
    page = subprocess.run([syncer, "manpage"], capture_output=True, text=True, check=True).stdout
    (man1 / "syncer.1").write_text(page)
    env = {**os.environ, "MANPATH": f"{man1.parent}:"}
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr
    text = UNIT.read_text()
    for directive in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "ExecReload=/bin/kill -HUP $MAINPID"):
        assert directive in text


def test_unit_leaves_the_mode_to_the_config_and_never_restarts_an_invalid_one() -> None:
    """ExecStart names the config file and no --mode (it would override `mode =` there);
    exit status 2 (invalid configuration) is not restarted; optional write paths carry "-";
    the runtime folder for a status socket exists; the docs link is syncer's own."""
    (exec_start,) = directives("ExecStart")
    assert exec_start == "/usr/local/bin/syncer run --config /etc/syncer/syncer.toml"
    assert directives("RestartPreventExitStatus") == ["2"]
    assert directives("RuntimeDirectory") == ["syncer"]
    for line in directives("ReadWritePaths"):
        assert all(path.startswith("-") for path in line.split()), line
    (documentation,) = directives("Documentation")
    assert "man:syncer(1)" in documentation.split()
    assert "nginx" not in documentation


def _expand(group: str, seen: dict[str, set[str]]) -> set[str]:
    """The system calls of a systemd filter group, nested groups included."""
    if not group.startswith("@"):
        return {group}
    if group not in seen:
        listing = subprocess.run(
            ["systemd-analyze", "syscall-filter", group], capture_output=True, text=True, check=True
        ).stdout
        names: set[str] = set()
        for line in listing.splitlines()[1:]:
            entry = line.strip()
            if entry and not entry.startswith("#"):
                names |= _expand(entry, seen)
        seen[group] = names
    return seen[group]


# What each capability is for, as system calls: one of them must pass the filter.
CAPABILITY_SYSCALLS = {
    "CAP_CHOWN": {"chown", "fchown", "fchownat", "lchown"},
    "CAP_SETUID": {"setuid", "setreuid", "setresuid", "setfsuid"},
    "CAP_SETGID": {"setgid", "setregid", "setresgid", "setgroups", "setfsgid"},
    "CAP_KILL": {"kill", "tgkill"},
    "CAP_DAC_OVERRIDE": {"openat", "open"},
    "CAP_DAC_READ_SEARCH": {"openat", "open"},
    "CAP_FOWNER": {"fchmod", "chmod", "fchmodat", "utimensat"},
    "CAP_NET_BIND_SERVICE": {"bind"},
    "CAP_SYS_TIME": {"settimeofday", "clock_settime", "adjtimex"},
    "CAP_SYS_CHROOT": {"chroot"},
    "CAP_SYS_PTRACE": {"ptrace"},
    "CAP_SYS_RESOURCE": {"setrlimit", "prlimit64"},
    "CAP_SYS_NICE": {"setpriority", "sched_setscheduler"},
    "CAP_MKNOD": {"mknod", "mknodat"},
}


@NEEDS_SYSTEMD_ANALYZE
def test_every_granted_capability_is_usable_under_the_syscall_filter() -> None:
    """A capability whose every system call the filter denies is a false promise (CAP_CHOWN
    under ~@privileged made the README's "owner is kept" untrue under the unit)."""
    seen: dict[str, set[str]] = {}
    allowed: set[str] = set()
    for line in directives("SystemCallFilter"):
        deny = line.startswith("~")
        names = set().union(*(_expand(entry, seen) for entry in line.lstrip("~").split()))
        allowed = allowed - names if deny else allowed | names
    (granted,) = directives("CapabilityBoundingSet")
    assert granted.split(), "an empty set is fine, but then this test has nothing to check"
    for capability in granted.split():
        assert capability in CAPABILITY_SYSCALLS, f"{capability}: add the system calls it is for to this test"
        usable = CAPABILITY_SYSCALLS[capability] & allowed
        assert usable, f"{capability} is granted, but the filter denies {sorted(CAPABILITY_SYSCALLS[capability])}"
    assert "chown" not in allowed  # what the README says: the owner of a rewritten file is not kept


@NEEDS_SYSTEMD_ANALYZE
def test_security_score_is_the_one_the_readme_records() -> None:
    """`systemd-analyze security --offline=true` scores the unit as README's systemd
    section says (update both together)."""
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(UNIT)], capture_output=True, text=True, check=False
    )
    scored = re.search(r"Overall exposure level for syncer\.service: ([0-9.]+) ", done.stdout)
    assert scored is not None, done.stdout + done.stderr
    recorded = re.search(
        r"systemd-analyze security --offline=true.*?\*\*([0-9.]+) [A-Z]+\*\*", README.read_text(), re.S
    )
    assert recorded is not None, "README records no score"
    assert scored.group(1) == recorded.group(1)


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
