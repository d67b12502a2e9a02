"""The agent's footprint from /proc: its TCP connections to Consul, threads and memory,
and a sampler that records them through a whole run (the peak is what the budget caps).

A connection counts when the agent holds a socket (an fd under /proc/<pid>/fd) whose TCP
peer is Consul's port; TIME_WAIT remnants belong to no process and are not counted.

The peer of each of the agent's sockets is read by borrowing the socket for a moment
(``pidfd_getfd``, Linux 5.6+, needs ptrace rights over the agent: root or the same user
without Yama restrictions) and asking ``getpeername``: a few syscalls per socket. Where
that is refused, the fallback scans ``/proc/<pid>/net/tcp{,6}``, which lists every socket
of the network namespace: on a shared machine that can be tens of thousands of lines
(other programs' TIME_WAIT sockets), too slow to sample often.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import procfs

_NOT_CONNECTED = {"06", "07", "0A"}  # TIME_WAIT, CLOSE, LISTEN


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


_SYS_PIDFD_GETFD = 438  # the same number on every architecture (added after the table unification)
_libc = ctypes.CDLL(None, use_errno=True)


def _borrow(pidfd: int, fd: int) -> int:
    got = int(_libc.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0))
    if got < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return got


def _socket_fds(pid: int) -> list[int]:
    found: list[int] = []
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return found
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:["):
                found.append(int(fd))
        except OSError:
            continue  # closed while we looked
    return found


def _peer_ports(pid: int) -> list[int] | None:
    """The TCP peer port of each connected socket of ``pid``; None where borrowing is refused."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    ports: list[int] = []
    try:
        for fd in _socket_fds(pid):
            try:
                mine = _borrow(pidfd, fd)
            except OSError as exc:
                if exc.errno in (errno.EPERM, errno.EACCES, errno.ENOSYS):
                    return None
                continue  # EBADF: closed meanwhile
            try:
                with socket.socket(fileno=mine) as sock:
                    if sock.type == socket.SOCK_STREAM and sock.family in (socket.AF_INET, socket.AF_INET6):
                        ports.append(sock.getpeername()[1])
            except OSError:
                continue  # not connected (yet, or any more), or not an inet socket
    finally:
        os.close(pidfd)
    return ports


def connections_to(pid: int, port: int) -> int:
    """TCP connections the process ``pid`` holds to ``port`` (IPv4 and IPv6)."""
    ports = _peer_ports(pid)
    if ports is not None:
        return ports.count(port)
    return _connections_from_table(pid, port)


def _connections_from_table(pid: int, port: int) -> int:
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
            if len(fields) < 10 or fields[3] in _NOT_CONNECTED:
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
