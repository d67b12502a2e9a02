"""Small readers of /proc: CPU times, memory, children, titles. Missing processes read as None."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuTimes:
    """Seconds of CPU: the process itself, and its waited-for children (``nginx -t``, reloads)."""

    own: float
    children: float

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(self.own - other.own, self.children - other.children)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm may contain spaces and parentheses; the fixed fields follow the last ')'.
    return stat[stat.rindex(")") + 2 :].split()


def cpu_times(pid: int) -> CpuTimes | None:
    fields = _stat_fields(pid)
    if fields is None:
        return None
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return CpuTimes((utime + stime) / CLOCK_TICKS, (cutime + cstime) / CLOCK_TICKS)


def status_kib(pid: int, *keys: str) -> dict[str, int] | None:
    """``VmRSS``, ``VmHWM``... from /proc/<pid>/status, in KiB."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    found = dict.fromkeys(keys, 0)
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in found:
            found[name] = int(rest.split()[0])
    return found


def title(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def children(pid: int) -> list[int]:
    """Direct children, from /proc/<pid>/task/*/children (no scan of all of /proc)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return found
    for task in tasks:
        try:
            found.extend(int(p) for p in Path(f"/proc/{pid}/task/{task}/children").read_text().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


def alive(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def tree_cpu(root: int) -> float:
    """CPU seconds of ``root`` and every live descendant, each with its reaped children
    (exited nginx workers, finished wrk runs...), so the sum is conserved when a process exits."""
    total, stack, seen = 0.0, [root], set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        times = cpu_times(pid)
        if times is None:
            continue
        total += times.own + times.children
        stack.extend(children(pid))
    return total


@dataclass(frozen=True)
class MachineCpu:
    """/proc/stat's first line: busy and total CPU seconds over all CPUs, and ours at that moment."""

    busy: float
    total: float
    ours: float

    def others_share(self, later: MachineCpu) -> float:
        """Share of all CPUs used by processes outside our tree between ``self`` and ``later``."""
        total = later.total - self.total
        others = (later.busy - self.busy) - (later.ours - self.ours)
        return max(0.0, others / total) if total > 0 else 0.0


def machine_cpu(root: int | None = None) -> MachineCpu:
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(fields[:8])  # user..steal; guest time is already inside user
    idle = fields[3] + fields[4]
    return MachineCpu((total - idle) / CLOCK_TICKS, total / CLOCK_TICKS, tree_cpu(root or os.getpid()))
