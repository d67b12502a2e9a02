"""Gray rules from Consul KV (issue 11): their cost on the hot path, and how fast a list
change reaches traffic in api mode. ``python -m bench.gray [--quick]`` runs it alone;
``bench.run`` runs it after the hot path and puts its rows in the report.

Throughput: per mode, two nginx side by side from the same `syncer nginx-example
--routing-entry web` config, fed by the same Consul (instances, service-resolver), one
with no KV rules and one with a 10,000-entry client-address list and a 1,000-entry Host
map. wrk sends from 127.0.0.1 with a Host in neither, so every stage looks up and misses
(the most work a request can cost) and the request then goes through Consul's chain like
the other side's. Rounds alternate which side goes first; the verdict is the median of
the per-round ratios, so a drift in the shared machine's load cancels out.

Propagation (api mode), through the real agent (`syncer run --routing`, quiescence 0 as
the benchmark's api agent): a KV write that puts one loopback address into (then out of)
the 10,000-entry list, timed from just before the PUT to the first request from that
address answered by the list's pool. The change travels Consul's blocking query ->
KVSource on the Watcher -> plan -> ApiSink (PUT /routes, the whole table) -> the Lua
router's per-request version check, which recompiles the table in that worker.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench import machine, procfs
from bench.analysis import percentile
from bench.load import Wrk, WrkResult, wrk_binary
from bench.settings import Settings, default_settings, quick_settings
from syncer import resources
from syncer.devconsul.server import DevConsul
from syncer.routing.kv_payload import gray_payload
from syncer.testing.backends import BackendFarm
from syncer.testing.consul import ConsulWriter
from syncer.testing.nginx import LUA_MODULES, NginxProcess
from syncer.testing.ports import free_port
from syncer.testing.routing import Mode, RoutingLab
from syncer.testing.wait import wait_until

LIST_ENTRIES = 10_000
HOST_ENTRIES = 1_000
SMALL_LIST = 10
TARGET_RATIO = 0.95
PROPAGATION_P99_MS = 50.0
MISS_HOST = "www.shop.example.org"  # in no rule: exact miss, then three wildcard lookups
RESOLVER = {
    "Kind": "service-resolver", "Name": "web", "DefaultSubset": "prod",
    "Subsets": {"prod": {"Filter": "Service.Meta.version == prod"}, "pre": {"Filter": "Service.Meta.version == pre"}},
}  # fmt: skip
LIST_KEY = "gray/web/lists/big"


def say(text: str) -> None:
    print(f"[gray] {text}", file=sys.stderr, flush=True)


def address_list(rng: random.Random, count: int = LIST_ENTRIES) -> list[str]:
    """``count`` distinct networks, 70 % IPv4 (/32, /28, /24) and 30 % IPv6, none in 127.0.0.0/8."""
    seen: set[str] = set()
    while len(seen) < count:
        if rng.random() < 0.7:
            base = rng.choice([0x0A000000, 0xAC100000, 0xC0A80000]) | rng.getrandbits(20)
            net = ipaddress.ip_network((base, rng.choice([32, 32, 28, 24])), strict=False)
        else:
            net = ipaddress.ip_network(
                ((0x20010DB8 << 96) | rng.getrandbits(96), rng.choice([128, 64, 48])), strict=False
            )
        seen.add(str(net))
    return sorted(seen)


def host_map(count: int = HOST_ENTRIES) -> dict[str, Any]:
    pre = {"service": "web", "subset": "pre"}
    wild = count // 5
    hosts = {f"svc{i}.example.com": pre for i in range(count - wild)}
    hosts.update({f"*.t{i}.example.net": pre for i in range(wild)})
    return {"hosts": hosts}


@dataclass
class Side:
    label: str
    runs: list[WrkResult] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)  # nginx workers' CPU per request


@dataclass
class ModeThroughput:
    mode: str
    none: Side
    rules: Side

    @property
    def ratios(self) -> list[float]:
        return [r.rps / n.rps for n, r in zip(self.none.runs, self.rules.runs, strict=True) if n.rps]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios) if self.ratios else 0.0

    def rps(self, side: Side) -> float:
        return statistics.median([r.rps for r in side.runs]) if side.runs else 0.0

    def p99(self, side: Side) -> float:
        return statistics.median([r.latency_ms["p99"] for r in side.runs]) if side.runs else 0.0

    def cpu(self, side: Side) -> float:
        return statistics.median(side.cpu_us) if side.cpu_us else 0.0

    @property
    def cpu_ratio(self) -> float:
        return self.cpu(self.none) / self.cpu(self.rules) if self.cpu(self.rules) else 0.0

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.none.runs + self.rules.runs)


@dataclass
class GrayResult:
    quick: bool
    list_entries: int
    host_entries: int
    seconds: float
    rounds: int
    throughput: list[ModeThroughput] = field(default_factory=list)
    propagation_ms: list[float] = field(default_factory=list)  # the 10,000-entry list
    propagation_small_ms: list[float] = field(default_factory=list)  # a 10-entry list
    loadavg: tuple[str, str] = ("", "")  # before, after: the machine is shared
    lua_us: dict[str, float] = field(default_factory=dict)  # in-nginx timings of the api stage

    def p(self, q: float) -> float | None:
        return percentile(self.propagation_ms, q)

    def to_dict(self) -> dict[str, Any]:
        return {
            "quick": self.quick,
            "list_entries": self.list_entries,
            "host_entries": self.host_entries,
            "seconds": self.seconds,
            "rounds": self.rounds,
            "throughput": [
                {
                    "mode": t.mode,
                    "ratio": t.ratio,
                    "cpu_ratio": t.cpu_ratio,
                    "ratios": t.ratios,
                    "failed": t.failed,
                    "none": [asdict(r) for r in t.none.runs],
                    "rules": [asdict(r) for r in t.rules.runs],
                    "cpu_us": {"none": t.none.cpu_us, "rules": t.rules.cpu_us},
                }
                for t in self.throughput
            ],
            "propagation_ms": self.propagation_ms,
            "propagation_small_ms": self.propagation_small_ms,
            "loadavg": self.loadavg,
            "lua_us": self.lua_us,
        }


def _workers_cpu(nginx: RoutingLab) -> float:
    total = 0.0
    for pid in procfs.children(nginx.nginx.pid):
        times = procfs.cpu_times(pid)
        total += times.own if times else 0.0
    return total


def _measure(nginx: RoutingLab, side: Side, settings: Settings, workdir: Path) -> None:
    before = _workers_cpu(nginx)
    wrk = Wrk(workdir, nginx.port, settings.hotpath_seconds, settings.wrk_threads, settings.wrk_connections, MISS_HOST)
    result = wrk.start().result()
    side.runs.append(result)
    side.cpu_us.append((_workers_cpu(nginx) - before) / max(1, result.requests) * 1e6)


def _time_change(consul_url: str, key: str, value: dict[str, Any], lab: RoutingLab, source: str, want: str) -> float:
    started = time.monotonic()
    requests.put(f"{consul_url}/v1/kv/{key}", data=json.dumps(value), timeout=5).raise_for_status()
    deadline = started + 10
    while time.monotonic() < deadline:
        if lab.request("/", source=source).backend.startswith(want):
            return (time.monotonic() - started) * 1000
    raise RuntimeError(f"{source} never reached {want} within 10 s")


def _propagation(
    settings: Settings, workdir: Path, consul: DevConsul, gray_list: dict[str, Any], samples: int
) -> dict[int, list[float]]:
    """The agent (api mode) against the same Consul, on the default KV prefix."""
    addresses: list[str] = gray_list["addresses"]
    key = f"syncer/{LIST_KEY}"
    requests.put(f"{consul.url}/v1/kv/{key}", data=json.dumps(gray_list), timeout=5).raise_for_status()
    with contextlib.ExitStack() as stack:  # the instances registered by run_gray serve here too
        lab = RoutingLab("api", workdir / "gray-agent", consul.url, worker_processes=settings.worker_processes)
        lab.start()
        stack.callback(lab.stop)
        log_path = workdir / "gray-agent.log"
        log = log_path.open("wb")
        stack.callback(log.close)
        agent = subprocess.Popen(
            [sys.executable, "-m", "syncer", "run", "--mode", "api", "--service", "web", "--routing",
             "--consul-addr", consul.address, "--metrics-listen", "127.0.0.1:0", "--log-format", "json",
             "--quiescence-min", "0", "--quiescence-max", "0",
             "--api-endpoint", f"http://127.0.0.1:{lab.admin_port}", "--api-token-file", str(lab.token_file)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

        def stop_agent() -> None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(10)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait(5)

        stack.callback(stop_agent)
        wait_until(
            lambda: lab.request("/", source="127.0.0.1").backend.startswith("prod-"),
            timeout=60,
            message=f"the agent's first sync ({log_path})",
        )
        series: dict[int, list[float]] = {}
        for size in (SMALL_LIST, len(addresses)):  # the pipeline's own latency, then a full list's
            base = {**gray_list, "addresses": addresses[:size]}
            requests.put(f"{consul.url}/v1/kv/{key}", data=json.dumps(base), timeout=5).raise_for_status()
            times = series.setdefault(size, [])
            for i in range(samples):
                _pace()
                source = f"127.0.0.{100 + i % 100}"
                changed = {**base, "addresses": [source, *addresses[1:size]]}  # the same size
                times.append(_time_change(consul.url, key, changed, lab, source, "pre-"))
                _pace()
                times.append(_time_change(consul.url, key, base, lab, source, "prod-"))
        return series


def _pace(gap: float = 0.25) -> None:
    """Changes a few per second, as operators make them: the agent's per-watch rate limit
    (10 queries/s, burst 2) is not what this measures."""
    time.sleep(gap)


LUA_TIMING = """
local json = require "syncer.json"
local gray = require "syncer.gray"
local body = package.loaded.gray_bench_payload
local function now() ngx.update_time() return ngx.now() end
local out, t0 = {}, now()
local spec = json.decode(body)
local c = assert(gray.compile(spec))
out.decode_and_compile_ms = (now() - t0) * 1000
local best = math.huge
for _ = 1, 5 do
    t0 = now()
    for _ = 1, 200000 do gray.decide(c) end
    best = math.min(best, (now() - t0) / 200000 * 1e6)
end
out.decide_us = best
ngx.say(json.encode(out))
"""


def lua_timings(workdir: Path, payload: dict[str, Any]) -> dict[str, float]:
    """The api-mode stage in a real nginx's LuaJIT, with real ngx.var lookups: the cost of
    one decision (best of 5 x 200,000, a miss on every stage: the most work) and of
    decoding + compiling the pushed table once per version."""
    prefix = workdir / "gray-lua"
    (prefix / "conf").mkdir(parents=True, exist_ok=True)
    path = prefix / "payload.json"
    path.write_text(json.dumps(payload))
    port = free_port()
    conf = f"""{LUA_MODULES}
worker_processes 1;
error_log logs/error.log warn;
pid logs/nginx.pid;
events {{ worker_connections 16; }}
http {{
    access_log off;
    lua_package_path "{resources.lua_dir()}/?.lua;;";
    # read as root in the master (the workers may not read the work folder)
    init_by_lua_block {{
        local f = assert(io.open("{path}", "rb"))
        package.loaded.gray_bench_payload = f:read("*a")
        f:close()
    }}
    server {{
        listen 127.0.0.1:{port};
        location = /time {{
            content_by_lua_block {{
{LUA_TIMING}
            }}
        }}
    }}
}}
"""
    nginx = NginxProcess(prefix, conf)
    nginx.start(wait_port=port)
    try:
        answer = requests.get(f"http://127.0.0.1:{port}/time", headers={"Host": MISS_HOST}, timeout=120)
        answer.raise_for_status()
        return {k: float(v) for k, v in answer.json().items()}
    finally:
        nginx.stop()


def run_gray(settings: Settings, workdir: Path) -> GrayResult:
    rng = random.Random(20191126)
    addresses = address_list(rng)
    gray_list = {"target": {"service": "web", "subset": "pre"}, "addresses": addresses}
    rounds = max(2, settings.hotpath_rounds)
    result = GrayResult(settings.quick, len(addresses), HOST_ENTRIES, settings.hotpath_seconds, rounds)
    before = machine.loadavg()
    with contextlib.ExitStack() as stack:
        consul = DevConsul(port=0)
        consul.start()
        stack.callback(consul.stop)
        farm = stack.enter_context(BackendFarm(workdir / "gray-backends", ["prod-1", "prod-2", "pre-1"]))
        writer = ConsulWriter(consul.url)
        stack.callback(writer.close)
        for name, port in farm.ports.items():
            writer.register("web", name, port, meta={"version": name.split("-")[0]})
        requests.put(f"{consul.url}/v1/config", json=RESOLVER, timeout=5).raise_for_status()
        for key, value in ((LIST_KEY, gray_list), ("gray/web/hosts", host_map())):
            requests.put(f"{consul.url}/v1/kv/with/{key}", data=json.dumps(value), timeout=5).raise_for_status()
        modes: tuple[Mode, ...] = ("reload", "api")
        for mode in modes:
            none = RoutingLab(mode, workdir / f"gray-{mode}-none", consul.url,
                              worker_processes=settings.worker_processes, kv_prefix="none/")  # fmt: skip
            rules = RoutingLab(mode, workdir / f"gray-{mode}-rules", consul.url,
                               worker_processes=settings.worker_processes, kv_prefix="with/")  # fmt: skip
            with contextlib.ExitStack() as sides:
                for lab in (none, rules):
                    lab.start()
                    sides.callback(lab.stop)
                    lab.sync()
                gray = rules.desired.routing["web"].gray if rules.desired else None
                if gray is None or not gray.ranges:
                    raise RuntimeError("the rules side has no gray table")
                say(f"{mode}: {len(gray.ranges)} address ranges, {len(gray.exact) + len(gray.wildcard)} host names")
                row = ModeThroughput(mode, Side("no rules"), Side("rules"))
                if settings.hotpath_warmup:
                    for proxy in (none, rules):
                        warm = Wrk(workdir, proxy.port, 1, settings.wrk_threads, settings.wrk_connections, MISS_HOST)
                        warm.start().result()
                for i in range(rounds):
                    order = [(none, row.none), (rules, row.rules)]
                    for proxy, measured in order if i % 2 == 0 else order[::-1]:
                        _measure(proxy, measured, settings, workdir)
                    none_run, rules_run = row.none.runs[-1], row.rules.runs[-1]
                    say(
                        f"{mode} round {i + 1}/{rounds}: {none_run.rps:,.0f} vs {rules_run.rps:,.0f} req/s "
                        f"(failed {none_run.failed}/{rules_run.failed}), ratio {row.ratios[-1]:.3f}"
                    )
                result.throughput.append(row)
                if mode == "api":
                    result.lua_us = lua_timings(workdir, gray_payload(gray))
        samples = 10 if settings.quick else 50
        series = _propagation(settings, workdir, consul, gray_list, samples)
        result.propagation_ms = series[len(addresses)]
        result.propagation_small_ms = series[SMALL_LIST]
        say(f"api propagation p50 {result.p(50):.1f} ms, p99 {result.p(99):.1f} ms")
    result.loadavg = (before, machine.loadavg())
    return result


def _verdict(ok: bool) -> str:
    return "meets the target" if ok else "**misses the target**"


SECTION = "## Gray rules from Consul KV (issue 11)"


def section(result: GrayResult | None) -> list[str]:
    """The report's rows (Markdown); nothing when the run had none."""
    if result is None:
        return []
    lines = [
        SECTION,
        "",
        f"Same nginx config and traffic side by side, one with no KV rules and one with a "
        f"{result.list_entries:,}-entry client-address list and a {result.host_entries:,}-entry Host map "
        f"(wrk from 127.0.0.1, Host `{MISS_HOST}`: every stage looks up and misses, then Consul's chain). "
        f"{result.rounds} alternating rounds of {result.seconds:g} s; ratio = median of per-round ratios. "
        f"Target: >= {TARGET_RATIO:.0%}. Load average before / after: {result.loadavg[0]} / {result.loadavg[1]} "
        "(a shared machine: the worker CPU per request is the steadier figure).",
        "",
        "| mode | req/s, no rules | req/s, rules | ratio | p99 ms, no rules | p99 ms, rules | "
        "worker CPU us/req, no rules | rules | CPU ratio | failed | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in result.throughput:
        lines.append(
            f"| {t.mode} | {t.rps(t.none):,.0f} | {t.rps(t.rules):,.0f} | {t.ratio:.1%} | "
            f"{t.p99(t.none):.2f} | {t.p99(t.rules):.2f} | {t.cpu(t.none):.1f} | {t.cpu(t.rules):.1f} | "
            f"{t.cpu_ratio:.1%} | {t.failed} | {_verdict(t.ratio >= TARGET_RATIO)} |"
        )
    lines += [
        "",
        "CPU ratio: worker CPU per request without rules / with rules, i.e. the throughput ratio nginx would "
        "reach if it were CPU-bound on a machine of its own (it counts nothing but nginx's own work).",
    ]
    if result.lua_us:
        lines += [
            "",
            f"In nginx's LuaJIT, with real `ngx.var` lookups: one api-mode gray decision (every stage looked up "
            f"and missed) costs {result.lua_us['decide_us']:.2f} us; decoding and compiling the pushed table, "
            f"once per version and worker, {result.lua_us['decode_and_compile_ms']:.1f} ms.",
        ]
    if result.propagation_ms:
        p50, p99, worst = result.p(50), result.p(99), max(result.propagation_ms)
        lines += [
            "",
            f"Propagation of a list change to traffic, api mode ({len(result.propagation_ms)} changes to the "
            f"{result.list_entries:,}-entry list, each adding or removing one address; from just before the KV PUT "
            "to the first request from that address answered by the list's pool): "
            f"p50 {p50 or 0:.1f} ms, p99 {p99 or 0:.1f} ms, max {worst:.1f} ms - target p99 <= "
            f"{PROPAGATION_P99_MS:g} ms: {_verdict((p99 or 0) <= PROPAGATION_P99_MS)}.",
            "",
            f"The same changes to a {SMALL_LIST}-entry list (the pipeline without the list's weight): "
            f"p50 {percentile(result.propagation_small_ms, 50) or 0:.1f} ms, "
            f"p99 {percentile(result.propagation_small_ms, 99) or 0:.1f} ms.",
            "",
            "Through the real agent (`syncer run --routing`, api mode, quiescence 0): Consul blocking query -> "
            "KVSource on the Watcher (validation) -> plan (flattening) -> ApiSink PUT /routes/web (the whole "
            "table, ~0.5 MB) -> the next request's version check recompiles the table in its worker.",
        ]
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gray", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    if wrk_binary() is None:
        raise SystemExit("bench: wrk is missing; run `make bootstrap`")
    settings = quick_settings() if args.quick else default_settings()
    with tempfile.TemporaryDirectory(prefix="syncer-gray-") as tmp:
        result = run_gray(settings, Path(tmp))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gray.md").write_text("\n".join(section(result)) + "\n")
    (args.out / "gray.json").write_text(json.dumps(result.to_dict(), indent=1) + "\n")
    print("\n".join(section(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
