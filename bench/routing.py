"""Traffic steering rows of the report (issue 10): what routing costs, how fast a weight moves.

Per mode, one dev Consul, echo backends, and two nginx configured by `syncer nginx-example
--routing-entry web`, each kept in step by a real agent (`syncer run --routing`):

* ``plain``: the entry with no config entries (its table sends everything to ``web``);
* ``routed``: 10 service-router routes that the load never matches (every request is
  tested against all ten, the worst case) and a 90/10 service-splitter.

Throughput: wrk against both, back to back in alternating order, rounds as in the hot
path; the verdict is the median of the per-round ratios (target >= 95 %).

Propagation: the splitter flips between 100/0 and 0/100 on ``routed``; the time from the
Consul write until a request lands on the new side, measured by a client that keeps
sending requests (about one per millisecond). Target for api mode: p99 <= 50 ms.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench import procfs
from bench.analysis import percentile
from bench.load import Wrk, WrkResult
from bench.mode_run import say
from bench.settings import Settings
from syncer.devconsul.server import DevConsul
from syncer.testing.consul import ConsulWriter
from syncer.testing.routing import EchoBackends, Mode, RoutingLab
from syncer.testing.wait import wait_until

MODES: tuple[Mode, ...] = ("reload", "api")
MIN_RATIO = 0.95
API_PROPAGATION_P99_MS = 50.0
ROUTES = 10


@dataclass(frozen=True)
class Run:
    wrk: WrkResult
    cpu_us: float  # nginx workers' CPU per request, microseconds: less sensitive to other load than req/s

    @property
    def rps(self) -> float:
        return self.wrk.rps

    @property
    def failed(self) -> int:
        return self.wrk.failed


@dataclass
class RoutingModeResult:
    mode: Mode
    rounds: list[tuple[Run, Run]] = field(default_factory=list)  # (plain, routed)
    propagation_ms: list[float] = field(default_factory=list)

    @property
    def cpu_ratio(self) -> float:
        """Median over rounds of routed / plain nginx CPU per request."""
        return percentile([r.cpu_us / p.cpu_us for p, r in self.rounds if p.cpu_us], 50) or 0.0

    @property
    def plain_cpu(self) -> float:
        return percentile([p.cpu_us for p, _ in self.rounds], 50) or 0.0

    @property
    def routed_cpu(self) -> float:
        return percentile([r.cpu_us for _, r in self.rounds], 50) or 0.0

    @property
    def ratio(self) -> float:
        return percentile([r.rps / p.rps for p, r in self.rounds if p.rps], 50) or 0.0

    @property
    def plain_rps(self) -> float:
        return percentile([p.rps for p, _ in self.rounds], 50) or 0.0

    @property
    def routed_rps(self) -> float:
        return percentile([r.rps for _, r in self.rounds], 50) or 0.0

    @property
    def failed(self) -> int:
        return sum(p.failed + r.failed for p, r in self.rounds)

    def p(self, q: float) -> float | None:
        return percentile(self.propagation_ms, q)


@dataclass
class RoutingBench:
    rounds: int
    seconds: float
    changes: int
    modes: list[RoutingModeResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds,
            "seconds": self.seconds,
            "changes": self.changes,
            "modes": {
                m.mode: {
                    "plain_rps": m.plain_rps,
                    "routed_rps": m.routed_rps,
                    "ratio": m.ratio,
                    "plain_cpu_us": m.plain_cpu,
                    "routed_cpu_us": m.routed_cpu,
                    "cpu_ratio": m.cpu_ratio,
                    "failed": m.failed,
                    "propagation_ms": m.propagation_ms,
                }
                for m in self.modes
            },
        }


def entries() -> list[dict[str, Any]]:
    routes = [
        {"Match": {"HTTP": {"PathPrefix": f"/never/{i}/", "Header": [{"Name": "X-Never", "Exact": str(i)}]}},
         "Destination": {"ServiceSubset": "v2"}}
        for i in range(ROUTES)
    ]  # fmt: skip
    return [
        {"Kind": "service-defaults", "Name": "web", "Protocol": "http"},
        {"Kind": "service-resolver", "Name": "web", "DefaultSubset": "v1",
         "Subsets": {"v1": {"Filter": "Service.Meta.version == 1"}, "v2": {"Filter": "Service.Meta.version == 2"}}},
        {"Kind": "service-router", "Name": "web", "Routes": routes},
        split(90),
    ]  # fmt: skip


def split(v1: float) -> dict[str, Any]:
    legs = [{"Weight": v1, "ServiceSubset": "v1"}, {"Weight": 100 - v1, "ServiceSubset": "v2"}]
    return {"Kind": "service-splitter", "Name": "web", "Splits": legs}  # a 0 % leg keeps its pool


@contextlib.contextmanager
def agent(lab: RoutingLab, consul: str, settings: Settings, log: Path) -> Iterator[None]:
    quiescence = settings.reload_quiescence if lab.mode == "reload" else settings.api_quiescence
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "syncer", *lab.agent_args(consul, quiescence)], stdout=out, stderr=subprocess.STDOUT
        )
        try:
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def backend(lab: RoutingLab) -> str:
    """Who answered; in reload mode a keep-alive connection an old worker closes as it goes
    away fails one request (nginx trac #1022): that is counted as "error", not fatal."""
    try:
        return lab.request("/").backend
    except requests.ConnectionError:
        return "error"


def propagation(lab: RoutingLab, consul: str, changes: int) -> list[float]:
    """Flip the splitter ``changes`` times; ms from each write to the first request on the new side."""
    out: list[float] = []
    side = "v1a"  # the backend of subset v1 (v2a: of v2)
    for _ in range(changes):
        side = "v2a" if side == "v1a" else "v1a"
        body = split(100 if side == "v1a" else 0)
        started = time.monotonic()
        requests.put(f"{consul}/v1/config", json=body, timeout=5).raise_for_status()
        deadline = started + 30
        while (got := backend(lab)) != side:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{lab.mode}: the split to {side} did not reach traffic in 30 s (still {got})")
        out.append((time.monotonic() - started) * 1000)
        wait_until(lambda s=side: all(backend(lab) == s for _ in range(20)), timeout=30)  # type: ignore[misc]
    return out


def run_mode(mode: Mode, settings: Settings, workdir: Path, echo: EchoBackends) -> RoutingModeResult:
    result = RoutingModeResult(mode)
    with contextlib.ExitStack() as stack:
        labs: dict[str, RoutingLab] = {}
        for name in ("plain", "routed"):
            dev = DevConsul(port=0).start()
            stack.callback(dev.stop)
            writer = ConsulWriter(dev.url)
            stack.callback(writer.close)
            writer.register("web", "v1a", echo.ports["v1a"], meta={"version": "1"})
            writer.register("web", "v2a", echo.ports["v2a"], meta={"version": "2"})
            if name == "routed":
                for entry in entries():
                    requests.put(f"{dev.url}/v1/config", json=entry, timeout=5).raise_for_status()
            lab = RoutingLab(mode, workdir / f"routing-{mode}-{name}", dev.url,
                             worker_processes=settings.worker_processes).start()  # fmt: skip
            stack.callback(lab.stop)
            stack.enter_context(agent(lab, dev.address, settings, workdir / f"routing-{mode}-{name}.log"))
            want = {"v1a"} if name == "routed" else {"v1a", "v2a"}
            wait_until(lambda lab=lab, want=want: want <= {backend(lab) for _ in range(40)},  # type: ignore[misc]
                       timeout=30, message=f"{mode} {name} serving")  # fmt: skip
            labs[name] = lab
        if settings.hotpath_warmup:
            for lab in labs.values():
                load(lab, settings, workdir, 1.0)
        for number in range(settings.hotpath_rounds):
            order = ("plain", "routed") if number % 2 == 0 else ("routed", "plain")
            got = {name: load(labs[name], settings, workdir, settings.hotpath_seconds) for name in order}
            result.rounds.append((got["plain"], got["routed"]))
            say(f"routing, {mode}, round {number + 1}: no rules {got['plain'].rps:,.0f} req/s "
                f"({got['plain'].cpu_us:.1f} µs/request), 10 routes + 90/10 split {got['routed'].rps:,.0f} req/s "
                f"({got['routed'].cpu_us:.1f} µs/request)")  # fmt: skip
        dev_url = labs["routed"].consul_url
        result.propagation_ms = propagation(labs["routed"], dev_url, changes_for(settings))
        say(f"routing, {mode}: weight change to traffic p50 {result.p(50) or 0:.1f} ms, p99 {result.p(99) or 0:.1f} ms")
    return result


def workers_cpu(lab: RoutingLab) -> float:
    total = 0.0
    for pid in procfs.children(lab.nginx.pid):
        times = procfs.cpu_times(pid)
        total += times.own if times else 0.0
    return total


def load(lab: RoutingLab, settings: Settings, workdir: Path, seconds: float) -> Run:
    before = workers_cpu(lab)
    wrk = Wrk(workdir, lab.port, seconds, settings.wrk_threads, settings.wrk_connections).start().result()
    return Run(wrk, (workers_cpu(lab) - before) / max(1, wrk.requests) * 1e6)


def changes_for(settings: Settings) -> int:
    return 4 if settings.quick else 20


def run_routing(settings: Settings, workdir: Path) -> RoutingBench:
    bench = RoutingBench(settings.hotpath_rounds, settings.hotpath_seconds, changes_for(settings))
    echo = EchoBackends(workdir / "routing-backends", ["v1a", "v2a"]).start()
    try:
        for mode in MODES:
            bench.modes.append(run_mode(mode, settings, workdir, echo))
    finally:
        echo.stop()
    return bench


def section(bench: RoutingBench | None) -> list[str]:
    """The report's rows for issue 10."""
    lines = ["## Traffic steering (Consul L7 entries)", ""]
    if bench is None:
        return [*lines, "Not measured in this run.", ""]
    lines += [
        f"Per mode, two nginx kept in step by a real agent (`syncer run --routing`): one entry with no rules, and "
        f"one with {ROUTES} service-router routes the load never matches plus a 90/10 service-splitter. wrk "
        f"against both back to back, {bench.rounds} round(s) of {bench.seconds:g} s, median of the per-round "
        f"ratios. Propagation: {bench.changes} splitter flips (100/0 <-> 0/100), from the Consul write to the "
        "first request on the new side.",
        "",
        "| mode | no rules req/s | 10 routes + split req/s | ratio (target >= 95 %) | nginx CPU µs/request, "
        "no rules → routed | failed | weight change p50 ms | p99 ms (api target <= 50) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in bench.modes:
        ok = "met" if m.ratio >= MIN_RATIO else "missed"
        p99 = m.p(99)
        target = ""
        if m.mode == "api" and p99 is not None:
            target = " (met)" if p99 <= API_PROPAGATION_P99_MS else " (missed)"
        lines.append(
            f"| {m.mode} | {m.plain_rps:,.0f} | {m.routed_rps:,.0f} | {m.ratio * 100:.1f} % ({ok}) | "
            f"{m.plain_cpu:.1f} → {m.routed_cpu:.1f} ({(m.cpu_ratio - 1) * 100:+.0f} %) | {m.failed} | "
            f"{m.p(50) or 0:.1f} | {p99 or 0:.1f}{target} |"
        )
    lines += [
        "",
        "Requests/s on a shared machine drift with other processes' load; the nginx workers' CPU per request "
        "is the steadier measure of what the rules cost. Reload mode's propagation includes the agent's "
        "quiescence window and an nginx reload per change; api mode's is a PUT of the table and the next "
        "request's version check.",
        "",
    ]
    return lines
