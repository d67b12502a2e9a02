"""nginx's processes and the agent's cost over time, sampled ~10 times a second from /proc.

Per sample: serving workers and workers "shutting down" (old generations kept alive by
open connections after a reload), total RSS of the master and all its children, the
proxy's stub_status request counter (throughput; it survives reloads), and the agent's
CPU seconds and RSS.
"""

from __future__ import annotations

import http.client
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench import procfs


@dataclass(frozen=True)
class Sample:
    t: float  # time.monotonic()
    workers: int
    shutting_down: int
    nginx_rss_kib: int  # master + every child (shared pages counted once per process)
    requests: int | None  # stub_status "requests" since nginx started
    agent_cpu: float | None  # own + waited-for children, seconds
    agent_rss_kib: int | None
    master_cpu: float | None


def stub_requests(port: int) -> int | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
    try:
        connection.request("GET", "/stub_status")
        text = connection.getresponse().read().decode()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()
    lines = text.splitlines()
    try:
        return int(lines[2].split()[2])
    except (IndexError, ValueError):
        return None


def nginx_processes(master: int) -> tuple[int, int, int]:
    """(serving workers, shutting-down workers, total RSS KiB of master + children)."""
    serving = shutting = 0
    rss = (procfs.status_kib(master, "VmRSS") or {}).get("VmRSS", 0)
    for pid in procfs.children(master):
        name = procfs.title(pid) or ""
        mem = procfs.status_kib(pid, "VmRSS")
        if mem is None:
            continue
        rss += mem["VmRSS"]
        if "worker process" in name:
            if "shutting down" in name:
                shutting += 1
            else:
                serving += 1
    return serving, shutting, rss


class Sampler:
    def __init__(self, master_pid: int, status_port: int, agent_pid: int | None, interval: float = 0.1) -> None:
        self.master_pid = master_pid
        self.status_port = status_port
        self.agent_pid = agent_pid
        self.interval = interval
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def sample(self) -> Sample:
        now = time.monotonic()
        serving, shutting, rss = nginx_processes(self.master_pid)
        agent_cpu = agent_rss = None
        if self.agent_pid is not None:
            cpu = procfs.cpu_times(self.agent_pid)
            mem = procfs.status_kib(self.agent_pid, "VmRSS")
            agent_cpu = cpu.own + cpu.children if cpu else None
            agent_rss = mem["VmRSS"] if mem else None
        master = procfs.cpu_times(self.master_pid)
        return Sample(
            now,
            serving,
            shutting,
            rss,
            stub_requests(self.status_port),
            agent_cpu,
            agent_rss,
            master.own if master else None,
        )

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.samples.append(self.sample())
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind (a busy machine): skip, do not burst
                next_at = time.monotonic()
                delay = 0
            self._stop.wait(delay)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.samples

    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None


class FsyncProbe:
    """How slow fsync is on the agent's filesystem right now: every ``interval`` a small
    file is written and fsynced, then its folder (what ``atomic_write`` does for the
    api-mode snapshot), and the time taken is kept as (time.monotonic(), ms)."""

    def __init__(self, folder: Path, interval: float = 0.25) -> None:
        self.folder = folder
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fsync-probe", daemon=True)

    def probe(self) -> float:
        path = self.folder / "fsync-probe.tmp"
        started = time.perf_counter()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"x" * 2048)
            os.fsync(fd)
        finally:
            os.close(fd)
        dir_fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return (time.perf_counter() - started) * 1000

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            at = time.monotonic()
            try:
                self.samples.append((at, self.probe()))
            except OSError:
                continue

    def start(self) -> FsyncProbe:
        self._thread.start()
        return self

    def stop(self) -> list[tuple[float, float]]:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.samples
