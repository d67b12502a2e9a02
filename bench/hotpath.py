"""The hot path: requests/s and p99 through the Lua balancer vs a static ``upstream {}``.

Two nginx instances with the same servers, no churn, no agent, no prober: only wrk.
``static`` is the reload-mode config of ``syncer nginx-example`` with an upstream block
written by hand; ``lua`` is the api-mode config with the same servers PUT to its admin
API. Both upstreams keep 64 idle connections to the backends (the api config's
``keepalive 64``; syncer's reload template writes 32).

The machine may be shared, and other processes' load drifts: each round runs static and
lua back to back (alternating which goes first) and the verdict is the median of the
per-round ratios, so that a drift between rounds cancels out. Each run also records the
nginx workers' CPU per request and the share of the CPUs other processes used.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from bench import procfs
from bench.analysis import percentile
from bench.backends import Backends
from bench.load import WrkResult, run_wrk
from bench.mode_run import say, wait_converged
from bench.ports import start_with_fresh_ports
from bench.settings import Settings
from bench.stack import Proxy, upstream_block

KEEPALIVE = 64


@dataclass(frozen=True)
class Run:
    wrk: WrkResult
    cpu_us: float  # nginx workers' CPU (user + system) per request, microseconds
    others_cpu: float  # share of all CPUs used by other processes meanwhile


@dataclass
class HotpathResult:
    servers: int
    seconds: float
    rounds: list[tuple[Run, Run]] = field(default_factory=list)  # (static, lua), back to back

    @property
    def static(self) -> list[WrkResult]:
        return [s.wrk for s, _ in self.rounds]

    @property
    def lua(self) -> list[WrkResult]:
        return [lua.wrk for _, lua in self.rounds]

    @staticmethod
    def _median(values: list[float]) -> float:
        return percentile(values, 50) or 0.0

    @property
    def ratio(self) -> float:
        """Median over rounds of Lua req/s / static req/s."""
        return self._median([lua.wrk.rps / s.wrk.rps for s, lua in self.rounds if s.wrk.rps])

    @property
    def cpu_ratio(self) -> float:
        return self._median([lua.cpu_us / s.cpu_us for s, lua in self.rounds if s.cpu_us])

    @property
    def static_rps(self) -> float:
        return self._median([r.rps for r in self.static])

    @property
    def lua_rps(self) -> float:
        return self._median([r.rps for r in self.lua])

    @property
    def static_p50(self) -> float:
        return self._median([r.latency_ms["p50"] for r in self.static])

    @property
    def lua_p50(self) -> float:
        return self._median([r.latency_ms["p50"] for r in self.lua])

    @property
    def static_p99(self) -> float:
        return self._median([r.latency_ms["p99"] for r in self.static])

    @property
    def lua_p99(self) -> float:
        return self._median([r.latency_ms["p99"] for r in self.lua])

    @property
    def static_cpu(self) -> float:
        return self._median([s.cpu_us for s, _ in self.rounds])

    @property
    def lua_cpu(self) -> float:
        return self._median([lua.cpu_us for _, lua in self.rounds])

    @property
    def others_cpu(self) -> float:
        return self._median([r.others_cpu for pair in self.rounds for r in pair])

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.static + self.lua)


def workers_cpu(proxy: Proxy) -> float:
    total = 0.0
    for pid in procfs.children(proxy.nginx.pid):
        times = procfs.cpu_times(pid)
        total += times.own if times else 0.0
    return total


def measure(settings: Settings, workdir: Path, proxy: Proxy) -> Run:
    cpu_before, machine_before = workers_cpu(proxy), procfs.machine_cpu()
    wrk = run_wrk(workdir, proxy.port, settings.hotpath_seconds, settings.wrk_threads, settings.wrk_connections)
    others = machine_before.others_share(procfs.machine_cpu())
    return Run(wrk, (workers_cpu(proxy) - cpu_before) / max(1, wrk.requests) * 1e6, others)


def run_hotpath(settings: Settings, backends: Backends, names: list[str], workdir: Path) -> HotpathResult:
    servers = [("127.0.0.1", backends.ports[name]) for name in names]
    slow = [("127.0.0.1", backends.slow_port)]
    static_conf = upstream_block("web", servers, KEEPALIVE) + upstream_block("slow", slow, KEEPALIVE)
    result = HotpathResult(len(servers), settings.hotpath_seconds)
    with contextlib.ExitStack() as stack:
        static = start_with_fresh_ports(
            lambda: Proxy(
                "reload", workdir, settings.worker_processes, label="hotpath-static", static_upstreams=static_conf
            ),
            Proxy.start,
            Proxy.stop,
        )
        stack.callback(static.stop)
        lua = start_with_fresh_ports(
            lambda: Proxy("api", workdir, settings.worker_processes, label="hotpath-lua"), Proxy.start, Proxy.stop
        )
        stack.callback(lua.stop)
        lua.push("web", servers)
        lua.push("slow", slow)
        for proxy in (static, lua):
            wait_converged(proxy.port, set(names))
            if settings.hotpath_warmup:
                run_wrk(workdir, proxy.port, 1, settings.wrk_threads, settings.wrk_connections)
        for number in range(settings.hotpath_rounds):
            if number % 2 == 0:
                static_run = measure(settings, workdir, static)
                lua_run = measure(settings, workdir, lua)
            else:
                lua_run = measure(settings, workdir, lua)
                static_run = measure(settings, workdir, static)
            result.rounds.append((static_run, lua_run))
            say(
                f"hot path, round {number + 1}: static {static_run.wrk.rps:,.0f} req/s "
                f"({static_run.cpu_us:.1f} µs/request), lua {lua_run.wrk.rps:,.0f} req/s "
                f"({lua_run.cpu_us:.1f} µs/request): {lua_run.wrk.rps / max(1.0, static_run.wrk.rps) * 100:.1f} %; "
                f"other processes used {static_run.others_cpu * 100:.0f} % / {lua_run.others_cpu * 100:.0f} % "
                "of the CPUs"
            )
    return result
