"""The hot path: requests/s and CPU per request through the Lua balancer vs a static ``upstream {}``.

nginx instances with the same servers, no churn, no agent, no prober: only wrk.
``static`` is the reload-mode config of ``syncer nginx-example`` with an upstream block
written by hand; ``lua`` is the api-mode config with the same servers PUT to its admin
API; ``bare`` (standalone run) is the same api config whose balancer is a bare round
robin in a few lines of Lua: the floor of any Lua balancer. All keep 64 idle
connections to the backends (the api config's ``keepalive 64``).

The machine may be shared, and other processes' load drifts: each round runs the
configs back to back (rotating which goes first) and the verdict is the median of the
per-round ratios, so that a drift between rounds cancels out. The figure that matters
is the nginx workers' CPU per request (from /proc), not requests/s.

Standalone, with one worker pinned to its own CPU and saturated (wrk and the backends
on the other CPU), 40 interleaved 1 s rounds:

    .venv/bin/python -m bench.hotpath --rounds 40 --seconds 1
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import procfs
from bench.analysis import percentile
from bench.backends import Backends
from bench.load import Wrk, WrkResult, run_wrk
from bench.mode_run import say, wait_converged
from bench.ports import start_with_fresh_ports
from bench.settings import Settings
from bench.stack import Proxy, upstream_block
from syncer.testing.nginx import NginxProcess

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
    bare: list[Run] = field(default_factory=list)  # standalone runs: the bare Lua balancer, same rounds

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
    def bare_cpu_ratio(self) -> float:
        return self._median(
            [b.cpu_us / s.cpu_us for (s, _), b in zip(self.rounds, self.bare, strict=False) if s.cpu_us]
        )

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


def measure(settings: Settings, workdir: Path, proxy: Proxy, pin: int | None = None) -> Run:
    """One wrk run against ``proxy``; with ``pin``, wrk runs on that CPU only."""
    cpu_before, machine_before = workers_cpu(proxy), procfs.machine_cpu()
    wrk = Wrk(workdir, proxy.port, settings.hotpath_seconds, settings.wrk_threads, settings.wrk_connections).start()
    if pin is not None and wrk._proc is not None:
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(wrk._proc.pid, {pin})
    result = wrk.result()
    others = machine_before.others_share(procfs.machine_cpu())
    return Run(result, (workers_cpu(proxy) - cpu_before) / max(1, result.requests) * 1e6, others)


# The floor of any Lua balancer: round robin over fixed peers, nothing else.
BARE_BALANCER = """-- written by bench/hotpath.py
local balancer = require "ngx.balancer"
local _M = {}
local peers, n, i = {}, 0, 0
function _M.set(list) peers, n = list, #list end
function _M.balance()
    i = i % n + 1
    local p = peers[i]
    balancer.set_current_peer(p[1], p[2])
end
return _M
"""


def bare_conf(lua_conf: str, lua_dir: Path, servers: list[tuple[str, int]]) -> str:
    """The api config with syncer's balancer swapped for BARE_BALANCER (and no log phase)."""
    peers = ", ".join(f'{{"{host}", {port}}}' for host, port in servers)
    conf = lua_conf.replace('require("syncer.balancer").balance("web")', 'require("bench_bare").balance()').replace(
        'log_by_lua_block { require("syncer.balancer").log() }', ""
    )
    conf = conf.replace('lua_package_path "', f'lua_package_path "{lua_dir}/?.lua;', 1)
    marker = "init_worker_by_lua_block {"
    return conf.replace(marker, f'{marker} require("bench_bare").set({{ {peers} }});', 1)


def pin_workers(proxy: Proxy, cpu: int) -> None:
    for pid in procfs.children(proxy.nginx.pid):
        os.sched_setaffinity(pid, {cpu})


def run_hotpath(
    settings: Settings,
    backends: Backends,
    names: list[str],
    workdir: Path,
    *,
    with_bare: bool = False,
    pin: tuple[int, int] | None = None,
) -> HotpathResult:
    """``pin``: (CPU for the measured nginx worker, CPU for wrk and the backends)."""
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
        proxies = {"static": static, "lua": lua}
        if with_bare:

            def build_bare() -> Proxy:
                proxy = Proxy("api", workdir, settings.worker_processes, label="hotpath-bare")
                lua_dir = workdir / "bare-lua"
                lua_dir.mkdir(exist_ok=True)
                (lua_dir / "bench_bare.lua").write_text(BARE_BALANCER)
                proxy.conf_text = bare_conf(proxy.conf_text, lua_dir, servers)
                proxy.nginx = NginxProcess(proxy.prefix, proxy.conf_text)
                return proxy

            bare = start_with_fresh_ports(build_bare, Proxy.start, Proxy.stop)
            stack.callback(bare.stop)
            bare.push("web", servers)  # unused by the bare balancer; keeps the dict alike
            proxies["bare"] = bare
        for proxy in proxies.values():
            wait_converged(proxy.port, set(names))
            if pin is not None:
                pin_workers(proxy, pin[0])
            if settings.hotpath_warmup:
                run_wrk(workdir, proxy.port, 1, settings.wrk_threads, settings.wrk_connections)
        wrk_cpu = pin[1] if pin is not None else None
        order = list(proxies)
        for number in range(settings.hotpath_rounds):
            runs: dict[str, Run] = {}
            rotated = order[number % len(order) :] + order[: number % len(order)]
            for label in rotated:
                runs[label] = measure(settings, workdir, proxies[label], wrk_cpu)
            result.rounds.append((runs["static"], runs["lua"]))
            if "bare" in runs:
                result.bare.append(runs["bare"])
            static_run, lua_run = runs["static"], runs["lua"]
            bare_text = (
                f", bare {runs['bare'].cpu_us:.1f} µs ({runs['bare'].cpu_us / static_run.cpu_us * 100:.1f} %)"
                if "bare" in runs and static_run.cpu_us
                else ""
            )
            say(
                f"hot path, round {number + 1}: static {static_run.wrk.rps:,.0f} req/s "
                f"({static_run.cpu_us:.1f} µs/request), lua {lua_run.wrk.rps:,.0f} req/s "
                f"({lua_run.cpu_us:.1f} µs/request, {lua_run.cpu_us / max(0.001, static_run.cpu_us) * 100:.1f} %)"
                f"{bare_text}; other processes used {static_run.others_cpu * 100:.0f} % of the CPUs"
            )
    return result


def markdown(result: HotpathResult, pinned: bool, command: str) -> str:
    rows = [
        ("static `upstream {}`", result.static_cpu, 1.0, result.static_rps),
        ("syncer's balancer", result.lua_cpu, result.cpu_ratio, result.lua_rps),
    ]
    if result.bare:
        bare_cpu = percentile([b.cpu_us for b in result.bare], 50) or 0.0
        bare_rps = percentile([b.wrk.rps for b in result.bare], 50) or 0.0
        rows.insert(1, ("bare round-robin `balancer_by_lua`", bare_cpu, result.bare_cpu_ratio, bare_rps))
    lines = [
        "# The balancer's own cost",
        "",
        f"`{command}` — {len(result.rounds)} interleaved rounds of {result.seconds:g} s, "
        + ("one nginx worker pinned to its own CPU (wrk and the backends on the other)" if pinned else "unpinned")
        + f"; other processes used a median {result.others_cpu * 100:.0f} % of the machine meanwhile.",
        "",
        "| config | worker CPU per request (median) | vs static (median of per-round ratios) | requests/s (median) |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | {cpu:.2f} µs | {ratio * 100:.1f} % | {rps:,.0f} |" for name, cpu, ratio, rps in rows]
    lines += ["", f"Failed requests: {result.failed}.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--no-pin", action="store_true", help="do not pin the worker and wrk to CPUs")
    parser.add_argument("--out", type=Path, default=Path("bench/results/hotpath.md"))
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    pin = None if args.no_pin or len(cpus) < 2 else (cpus[-1], cpus[0])
    settings = Settings(
        quick=False,
        worker_processes=1,
        hotpath_rounds=args.rounds,
        hotpath_seconds=args.seconds,
        wrk_threads=1,
        wrk_connections=args.connections,
    )
    workdir = Path(f"/tmp/syncer-hotpath-{os.getpid()}-{int(time.time())}")
    workdir.mkdir(parents=True)
    names = ["b1", "b2", "b3"]
    backends = Backends(workdir / "backends", names).start()
    try:
        if pin is not None:
            for pid in [backends.nginx.pid, *procfs.children(backends.nginx.pid)]:
                os.sched_setaffinity(pid, {pin[1]})
        result = run_hotpath(settings, backends, names, workdir, with_bare=True, pin=pin)
    finally:
        backends.stop()
    command = f".venv/bin/python -m bench.hotpath --rounds {args.rounds} --seconds {args.seconds:g}"
    text = markdown(result, pin is not None, command)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
