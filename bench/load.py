"""The load: wrk with keep-alive connections, its summary as JSON from a Lua ``done()``."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MARK = "BENCH_WRK_JSON "

# wrk's summary counts a response with status > 399 as errors.status; socket errors
# (connect/read/write/timeout) are counted separately and are not in "requests".
DONE_SCRIPT = """-- written by bench/load.py: print wrk's summary as one JSON line
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%.1f,"p90":%.1f,"p99":%.1f,"p999":%.1f,"max":%.1f,"mean":%.1f}}\\n',
    "MARK", summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
""".replace("MARK", MARK)


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    errors: dict[str, int]
    latency_ms: dict[str, float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def socket_errors(self) -> int:
        return sum(v for k, v in self.errors.items() if k != "status")

    @property
    def failed(self) -> int:
        """Non-2xx answers plus socket errors (connect, read, write, timeout)."""
        return self.errors.get("status", 0) + self.socket_errors

    @property
    def ok_rps(self) -> float:
        return (self.requests - self.errors.get("status", 0)) / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rps": self.rps, "failed": self.failed}


def wrk_binary() -> str | None:
    return shutil.which("wrk")


def parse(stdout: str) -> WrkResult:
    for line in stdout.splitlines():
        if line.startswith(MARK):
            data = json.loads(line[len(MARK) :])
            return WrkResult(
                requests=int(data["requests"]),
                seconds=data["duration_us"] / 1e6,
                errors={k: int(v) for k, v in data["errors"].items()},
                latency_ms={k: v / 1000 for k, v in data["latency_us"].items()},
            )
    raise ValueError(f"no wrk summary in its output: {stdout[-1000:]!r}")


class Wrk:
    """One wrk run in the background: ``start()``, do something else, ``result()``."""

    def __init__(
        self, workdir: Path, port: int, seconds: float, threads: int, connections: int, host: str = "web"
    ) -> None:
        script = workdir / "wrk-done.lua"
        if not script.exists():
            script.write_text(DONE_SCRIPT)
        self.seconds = seconds
        self.args = [
            wrk_binary() or "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency",
            "--timeout", "5s", "-s", str(script), "-H", f"Host: {host}", f"http://127.0.0.1:{port}/",
        ]  # fmt: skip
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> Wrk:
        self._proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return self

    def result(self) -> WrkResult:
        if self._proc is None:
            raise RuntimeError("wrk not started")
        try:
            stdout, _ = self._proc.communicate(timeout=self.seconds + 30)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError("wrk did not finish in time") from None
        if self._proc.returncode != 0:
            raise RuntimeError(f"wrk exited with {self._proc.returncode}: {stdout[-1000:]}")
        return parse(stdout)

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.communicate(timeout=5)


def run_wrk(workdir: Path, port: int, seconds: float, threads: int, connections: int) -> WrkResult:
    return Wrk(workdir, port, seconds, threads, connections).start().result()
