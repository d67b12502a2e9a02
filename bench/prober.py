"""The prober and the long-lived connections, run as their own process (``python -m bench.prober``).

In a separate process so its tight loops never compete for the GIL with the dev Consul
and the churn driver (which live in the benchmark's main process).

- prober: ``--threads`` keep-alive connections to the proxy, each sending ``GET /``
  (Host ``web``) back to back; every answer is timestamped (``time.monotonic()``, the
  same clock as the churn driver's) with its ``X-Backend``; every failure is kept with
  its time and kind.
- holders: ``--holders`` keep-alive connections that each long-poll ``Host: slow``
  (the slow backend answers after ``--hold-seconds``) and ask again on the same
  connection: the long-lived connections that keep old workers alive after a reload.

On SIGTERM (or after ``--max-seconds``) both stop and the result is written as JSON.
"""

from __future__ import annotations

import argparse
import array
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from bench.rawhttp import ClientError, KeepAliveClient, Stopped
from syncer.testing.wait import wait_until

ROOT = Path(__file__).resolve().parents[1]
BIN = 0.1  # seconds per time bin


def bin_of(t: float) -> int:
    return int(t / BIN)


@dataclass
class Tally:
    """What one thread saw; merged at the end (no locks on the hot path)."""

    ok: int = 0
    ok_bins: Counter[int] = field(default_factory=Counter)
    errors: list[tuple[float, str]] = field(default_factory=list)
    first: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    latencies: array.array[float] = field(default_factory=lambda: array.array("d"))

    def failed(self, kind: str) -> None:
        if len(self.errors) < 200_000:
            self.errors.append((time.monotonic(), kind))


def probe(port: int, stop: threading.Event, tally: Tally) -> None:
    client = KeepAliveClient(port, "web", timeout=5.0)
    keep_latency = tally.latencies.append
    try:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                response = client.get("/")
            except ClientError as exc:
                tally.failed(exc.kind)
                if exc.kind == "connect":
                    stop.wait(0.01)
                continue
            now = time.monotonic()
            if len(tally.latencies) < 1_000_000:
                keep_latency(now - sent)
            if 200 <= response.status < 300:
                tally.ok += 1
                tally.ok_bins[bin_of(now)] += 1
                name = response.backend
                tally.last[name] = now
                if name not in tally.first:
                    tally.first[name] = now
            else:
                tally.failed(f"http_{response.status}")
    finally:
        client.close()


def hold(port: int, hold_seconds: float, stop: threading.Event, tally: Tally, seed: int) -> None:
    client = KeepAliveClient(port, "slow", timeout=hold_seconds + 15, stop=stop)
    rng = random.Random(seed)
    # the first long-poll of each connection ends at a random point, so that answers
    # (and reconnections) spread out instead of coming in waves
    wait = rng.uniform(0.2, hold_seconds)
    try:
        while not stop.is_set():
            try:
                response = client.get(f"/hold?hold={wait:.3f}")
            except Stopped:
                return
            except ClientError as exc:
                tally.failed(exc.kind)
                stop.wait(0.05)
                continue
            wait = hold_seconds
            now = time.monotonic()
            if 200 <= response.status < 300:
                tally.ok += 1
                tally.ok_bins[bin_of(now)] += 1
            else:
                tally.failed(f"http_{response.status}")
    finally:
        client.close()


def merged(tallies: list[Tally]) -> dict[str, Any]:
    ok_bins: Counter[int] = Counter()
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    errors: list[tuple[float, str]] = []
    latencies: list[float] = []
    for t in tallies:
        ok_bins.update(t.ok_bins)
        errors.extend(t.errors)
        latencies.extend(t.latencies)
        for name, at in t.first.items():
            first[name] = min(at, first.get(name, at))
        for name, at in t.last.items():
            last[name] = max(at, last.get(name, at))
    latencies.sort()

    def pct(q: float) -> float | None:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else None

    return {
        "ok": sum(t.ok for t in tallies),
        "ok_bins": {str(k): v for k, v in sorted(ok_bins.items())},
        "errors": sorted(errors),
        "first": first,
        "last": last,
        "latency_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": latencies[-1] * 1000 if latencies else None},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.prober", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="the proxy's traffic port")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--holders", type=int, default=50)
    parser.add_argument("--hold-seconds", type=float, default=10.0)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--ready-file", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    started = time.monotonic()
    probes = [Tally() for _ in range(args.threads)]
    holds = [Tally() for _ in range(args.holders)]
    threads = [
        threading.Thread(target=probe, args=(args.port, stop, t), name=f"probe-{i}", daemon=True)
        for i, t in enumerate(probes)
    ] + [
        threading.Thread(target=hold, args=(args.port, args.hold_seconds, stop, t, i), name=f"hold-{i}", daemon=True)
        for i, t in enumerate(holds)
    ]
    for thread in threads:
        thread.start()
    args.ready_file.write_text(f"{os.getpid()}\n")
    deadline = started + args.max_seconds
    while not stop.wait(0.2):
        if time.monotonic() >= deadline:
            stop.set()
    stopped = time.monotonic()
    for thread in threads:
        thread.join(timeout=max(0.1, stopped + 5 - time.monotonic()))
    result = {
        "started": started,
        "stopped": stopped,
        "threads": args.threads,
        "prober": merged(probes),
        "holders": {**merged(holds), "connections": args.holders, "hold_seconds": args.hold_seconds},
    }
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(args.out)
    return 0


class ProberProcess:
    """The prober subprocess seen from the benchmark: start, stop, result."""

    def __init__(
        self, workdir: Path, port: int, threads: int, holders: int, hold_seconds: float, max_seconds: float
    ) -> None:
        self.out = workdir / "prober.json"
        self.ready = workdir / "prober.ready"
        self.args = [
            sys.executable, "-m", "bench.prober", "--port", str(port), "--threads", str(threads),
            "--holders", str(holders), "--hold-seconds", str(hold_seconds), "--max-seconds", str(max_seconds),
            "--ready-file", str(self.ready), "--out", str(self.out),
        ]  # fmt: skip
        self.log = workdir / "prober.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ProberProcess:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        with self.log.open("wb") as log:
            self._proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        proc = self._proc
        wait_until(lambda: self.ready.exists() or proc.poll() is not None, timeout=15, message="prober ready")
        if proc.poll() is not None:
            raise RuntimeError(f"prober exited with {proc.returncode}: {self.log.read_text()[-2000:]}")
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def stop(self) -> dict[str, Any]:
        if self._proc is None:
            raise RuntimeError("prober not started")
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
                raise RuntimeError("prober did not stop in time") from None
        if not self.out.exists():
            raise RuntimeError(f"prober wrote no result (exit {self._proc.returncode}): {self.log.read_text()[-2000:]}")
        result: dict[str, Any] = json.loads(self.out.read_text())
        return result

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=5)


if __name__ == "__main__":
    raise SystemExit(main())
