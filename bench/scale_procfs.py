"""The agent's footprint from /proc: its TCP connections to Consul, threads and memory,
and a sampler that records them through a whole run (the peak is what the budget caps).

A connection counts when the agent holds a socket (an fd under /proc/<pid>/fd) whose TCP
peer is Consul's port, in any state but LISTEN; TIME_WAIT remnants belong to no process
and are not counted.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import procfs

_LISTEN = "0A"


def socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed while we looked
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _peer_port(rem_address: str) -> int:
    return int(rem_address.rsplit(":", 1)[1], 16)


def connections_to(pid: int, port: int) -> int:
    """TCP connections the process ``pid`` holds to ``port`` (IPv4 and IPv6)."""
    inodes = socket_inodes(pid)
    if not inodes:
        return 0
    count = 0
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] == _LISTEN:
                continue
            if _peer_port(fields[2]) == port and int(fields[9]) in inodes:
                count += 1
    return count


def threads(pid: int) -> int:
    return (procfs.status_kib(pid, "Threads") or {}).get("Threads", 0)


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB."""
    found = procfs.status_kib(pid, "VmRSS", "VmHWM") or {}
    return found.get("VmRSS", 0), found.get("VmHWM", 0)


@dataclass
class Sample:
    at: float  # monotonic
    connections: int
    threads: int
    rss_kib: int


@dataclass
class FootprintSampler:
    """Samples the agent every ``interval`` seconds in a thread until ``stop()``."""

    pid: int
    consul_port: int
    interval: float = 0.05
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> FootprintSampler:
        self._thread = threading.Thread(target=self._run, name="footprint sampler", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            if not procfs.alive(self.pid):
                return
            self.samples.append(
                Sample(
                    time.monotonic(),
                    connections_to(self.pid, self.consul_port),
                    threads(self.pid),
                    rss_kib(self.pid)[0],
                )
            )
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in list(self.samples) if start <= s.at <= end]

    def peak_connections(self) -> int:
        return max((s.connections for s in list(self.samples)), default=0)

    def peak_threads(self) -> int:
        return max((s.threads for s in list(self.samples)), default=0)
