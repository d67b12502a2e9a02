"""What the report says about the machine: CPUs, memory, versions, and how busy it was."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from syncer.testing.nginx import has_lua_module, nginx_binary


@dataclass(frozen=True)
class Machine:
    nproc: int
    cpu_model: str
    memory_gib: float
    kernel: str
    nginx: str
    lua_module: bool
    python: str
    wrk: str
    loadavg: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _first_line(args: list[str]) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    out = (done.stdout + done.stderr).strip().splitlines()
    return out[0].strip() if out else "unknown"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_busy_share(seconds: float = 1.0) -> float:
    """Share of all CPUs busy over ``seconds`` (from /proc/stat): what others use before we start."""

    def read() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields), idle

    total0, idle0 = read()
    time.sleep(seconds)
    total1, idle1 = read()
    total = total1 - total0
    return 1 - (idle1 - idle0) / total if total else 0.0


def describe() -> Machine:
    return Machine(
        nproc=len(os.sched_getaffinity(0)),
        cpu_model=cpu_model(),
        memory_gib=memory_gib(),
        kernel=platform.release(),
        nginx=_first_line([nginx_binary() or "nginx", "-v"]),
        lua_module=has_lua_module(),
        python=sys.version.split()[0],
        wrk=_first_line(["wrk", "-v"]).split(" Copyright")[0],
        loadavg=loadavg(),
    )
