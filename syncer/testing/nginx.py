"""Start, reload and stop a real nginx under its own prefix, and look at its workers."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from syncer.testing.ports import port_open
from syncer.testing.wait import wait_until

LUA_MODULES = (
    "load_module /usr/lib/nginx/modules/ndk_http_module.so;\n"
    "load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;\n"
)


def nginx_binary() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def has_lua_module() -> bool:
    return Path("/usr/lib/nginx/modules/ngx_http_lua_module.so").exists()


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    title: str
    rss_kib: int


def _read_proc(pid: int) -> Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The comm field may contain spaces; everything after the last ')' is fixed-format.
    fields = stat[stat.rindex(")") + 2 :].split()
    rss = 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return Proc(pid=pid, ppid=int(fields[1]), title=title, rss_kib=rss)


def process_alive(pid: int) -> bool:
    """Still a process (not yet reaped zombies of ours count as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def children(ppid: int) -> list[Proc]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            proc = _read_proc(int(entry))
            if proc is not None and proc.ppid == ppid:
                found.append(proc)
    return found


class NginxProcess:
    """One nginx master run in the foreground (``daemon off``) with ``-p PREFIX -c FILE``."""

    def __init__(self, prefix: Path, conf_text: str | None = None, binary: str | None = None) -> None:
        self.prefix = prefix
        self.conf_path = prefix / "conf" / "nginx.conf"
        self.binary = binary or nginx_binary() or "nginx"
        self._proc: subprocess.Popen[bytes] | None = None
        (prefix / "conf").mkdir(parents=True, exist_ok=True)
        (prefix / "logs").mkdir(parents=True, exist_ok=True)
        if conf_text is not None:
            self.conf_path.write_text(conf_text)

    @property
    def base_args(self) -> list[str]:
        return [self.binary, "-p", str(self.prefix), "-c", str(self.conf_path)]

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("nginx is not running")
        return self._proc.pid

    def test_config(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.base_args, "-t"], capture_output=True, text=True, timeout=30, check=False)

    def start(self, wait_port: int | None = None, timeout: float = 10.0) -> None:
        self._proc = subprocess.Popen(
            [*self.base_args, "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=open(self.prefix / "logs" / "stderr.log", "ab"),  # noqa: SIM115 - lives with the process
        )
        if wait_port is not None:
            wait_until(
                lambda: self._check_alive() and port_open(wait_port),
                timeout=timeout,
                message=f"nginx listening on {wait_port}",
            )
        else:
            wait_until(lambda: self._check_alive() and self.workers(), timeout=timeout, message="nginx workers")

    def _check_alive(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            log = self.prefix / "logs" / "error.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            stderr = (self.prefix / "logs" / "stderr.log").read_text()[-2000:]
            raise RuntimeError(f"nginx exited with {self._proc.returncode}: {stderr} {tail}")
        return True

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def workers(self, include_shutting_down: bool = False) -> list[Proc]:
        procs = [p for p in children(self.pid) if "worker process" in p.title]
        if include_shutting_down:
            return procs
        return [p for p in procs if "shutting down" not in p.title]

    def all_processes(self) -> list[Proc]:
        master = _read_proc(self.pid)
        return ([master] if master else []) + children(self.pid)

    def reload(self, timeout: float = 10.0) -> None:
        """SIGHUP the master and wait until a new generation of workers serves."""
        before = {p.pid for p in self.workers()}
        os.kill(self.pid, signal.SIGHUP)
        wait_until(
            lambda: (now := {p.pid for p in self.workers()}) and not (now & before),
            timeout=timeout,
            message="a new generation of nginx workers",
        )

    def stop(self, timeout: float = 10.0) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.send_signal(signal.SIGQUIT)
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=timeout)

    def kill(self) -> None:
        """Stop abruptly (SIGKILL to the master, then to its workers), like a crash.

        The master goes first: a master that outlives its workers' SIGKILL respawns them,
        and the new ones, unknown to us, would be orphaned still holding the ports and the
        shared memory. Workers orphaned by the master's death are killed by their pid.
        """
        if self._proc is None or self._proc.poll() is not None:
            return
        workers = [p.pid for p in children(self.pid)]
        self._proc.kill()
        self._proc.wait(timeout=10)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_until(
            lambda: not any(process_alive(pid) for pid in workers),
            timeout=5,
            message="killed nginx workers gone",
        )

    def error_log(self) -> str:
        path = self.prefix / "logs" / "error.log"
        return path.read_text() if path.exists() else ""
