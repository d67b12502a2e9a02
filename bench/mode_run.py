"""One mode from start to finish: dev Consul, proxy, agent, prober, then every scenario.

The backends are shared by both modes (started once by ``bench.run``); each mode gets
its own dev Consul, nginx, agent and its own fresh instance names, so nothing carries
over from one mode to the other.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import procfs
from bench.backends import Backends
from bench.churn import ChurnDriver, Instances, Write
from bench.load import Wrk, WrkResult, run_wrk
from bench.ports import start_with_fresh_ports
from bench.prober import ProberProcess
from bench.rawhttp import ClientError, KeepAliveClient
from bench.sampler import FsyncProbe, Sample, Sampler
from bench.scenarios import Scenario
from bench.settings import Settings
from bench.stack import Agent, Applied, Consul, Mode, Proxy
from syncer.testing.consul import ConsulWriter
from syncer.testing.wait import wait_until


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


@dataclass
class Window:
    """One scenario in one mode, as measured (raw; ``bench.analysis`` summarises)."""

    scenario: Scenario
    start: float  # time.monotonic() when the load started
    load_end: float
    end: float  # after the settle (old workers gone, or the settle limit)
    writes: list[Write]
    wrk: WrkResult
    agent_cpu: procfs.CpuTimes
    master_cpu: float
    metrics_before: dict[str, float]
    metrics_after: dict[str, float]
    settled: bool
    others_cpu: float  # share of all CPUs used by processes that are not the benchmark's


@dataclass
class ModeRun:
    mode: Mode
    quiescence: tuple[float, float]
    agent_command: str
    windows: list[Window] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    fsync_ms: list[tuple[float, float]] = field(default_factory=list)
    """(time.monotonic(), ms) of a small fsync probe on the agent's filesystem."""
    prober: dict[str, Any] = field(default_factory=dict)
    agent_peak_rss_kib: int = 0
    agent_cpu_total: procfs.CpuTimes = field(default_factory=lambda: procfs.CpuTimes(0.0, 0.0))
    held_drops: int = 0
    agent_errors: int = 0
    initial_sync_seconds: float = 0.0
    agent_events: list[dict[str, object]] = field(default_factory=list)
    applied: list[Applied] = field(default_factory=list)
    """When changes reached nginx: admin PUTs answered (api), reloads signalled (reload)."""
    syncs: list[Applied] = field(default_factory=list)
    wall_offset: float = field(default_factory=lambda: time.time() - time.monotonic())
    """time.time() - time.monotonic(): maps the agent's log timestamps onto windows."""


def syncs(events: list[dict[str, object]], action: str | None = None) -> list[Applied]:
    """The agent's syncs (wall-clock start and end, from its JSON log), all or of one ``action``.
    A reload-mode sync with action "reloaded" ends when ``nginx -s reload`` returned."""
    found = []
    for e in events:
        duration = e.get("duration")
        if (
            e.get("event") == "sync"
            and e.get("action") != "unchanged"
            and (action is None or e.get("action") == action)
            and isinstance(duration, int | float)
        ):
            end = datetime.fromisoformat(str(e["timestamp"]).replace("Z", "+00:00")).timestamp()
            found.append(Applied(end - float(duration), end))
    return found


def wait_converged(port: int, expected: set[str], timeout: float = 30.0) -> None:
    """Until a run of requests through nginx lands on exactly the expected instances."""
    client = KeepAliveClient(port, "web", timeout=2.0)

    def converged() -> bool:
        seen: set[str] = set()
        for _ in range(20 * len(expected)):
            try:
                seen.add(client.get("/").backend)
            except ClientError:
                return False
        return seen == expected

    try:
        wait_until(converged, timeout=timeout, interval=0.05, message=f"nginx to serve {sorted(expected)}")
    finally:
        client.close()


def settle(sampler: Sampler, since: float, minimum: float, maximum: float) -> bool:
    """Wait until no worker is "shutting down" (at least ``minimum``, at most ``maximum`` seconds)."""
    earliest, deadline = since + minimum, since + maximum
    while True:
        now = time.monotonic()
        latest = sampler.latest()
        if now >= earliest and latest is not None and latest.t > since and latest.shutting_down == 0:
            return True
        if now >= deadline:
            return False
        time.sleep(0.1)


def run_window(
    scenario: Scenario,
    settings: Settings,
    workdir: Path,
    proxy: Proxy,
    agent: Agent,
    driver: ChurnDriver,
    sampler: Sampler,
) -> Window:
    metrics_before, cpu_before = agent.metrics(), agent.cpu()
    machine_before = procfs.machine_cpu()
    master_before = procfs.cpu_times(proxy.nginx.pid)
    wrk = Wrk(workdir, proxy.port, scenario.load_seconds, settings.wrk_threads, settings.wrk_connections)
    start = time.monotonic()
    wrk.start()
    try:
        writes = driver.run(scenario.ops, start + scenario.churn_starts)
        result = wrk.result()
    finally:
        wrk.kill()
    load_end = time.monotonic()
    settled = settle(sampler, load_end, settings.min_settle_seconds, settings.settle_max)
    end = time.monotonic()
    others = machine_before.others_share(procfs.machine_cpu())
    master_after = procfs.cpu_times(proxy.nginx.pid)
    master = master_after.own - master_before.own if master_before and master_after else 0.0
    return Window(
        scenario, start, load_end, end, writes, result, agent.cpu() - cpu_before, master,
        metrics_before, agent.metrics(), settled, others,
    )  # fmt: skip


def run_mode(
    mode: Mode, settings: Settings, scenarios: list[Scenario], backends: Backends, names: list[str], workdir: Path
) -> ModeRun:
    quiescence = settings.reload_quiescence if mode == "reload" else settings.api_quiescence
    with contextlib.ExitStack() as stack:
        consul = Consul().start()
        stack.callback(consul.stop)
        writer = ConsulWriter(consul.url)
        stack.callback(writer.close)
        instances = Instances(names, backends.ports)
        driver = ChurnDriver(writer, instances)
        driver.register_initial(settings.instances)
        writer.register("slow", "slow-1", backends.slow_port)

        proxy = start_with_fresh_ports(lambda: Proxy(mode, workdir, settings.worker_processes), Proxy.start, Proxy.stop)
        stack.callback(proxy.stop)
        agent = Agent(mode, proxy, consul.address, workdir, quiescence)
        stack.callback(agent.stop)
        started = time.monotonic()
        agent.start()
        wait_converged(proxy.port, set(instances.active))
        run = ModeRun(mode, quiescence, agent.command, initial_sync_seconds=time.monotonic() - started)
        say(f"{mode}: nginx serves the {settings.instances} initial instances")

        sampler = Sampler(proxy.nginx.pid, proxy.status_port, agent.pid).start()
        stack.callback(sampler.stop)
        fsync_probe = FsyncProbe(proxy.snapshot_file.parent).start()
        stack.callback(fsync_probe.stop)
        prober = ProberProcess(
            workdir,
            proxy.port,
            settings.prober_threads,
            settings.holders,
            settings.hold_seconds,
            max_seconds=settings.time_limit,
        ).start()
        stack.callback(prober.kill)
        # the long-lived connections open, the caches and LuaJIT's traces warm up: not measured
        run_wrk(workdir, proxy.port, 1, settings.wrk_threads, settings.wrk_connections)

        for scenario in scenarios:
            say(f"{mode}: {scenario.title.lower()}: {scenario.what} ({scenario.load_seconds:g} s of load)")
            window = run_window(scenario, settings, workdir, proxy, agent, driver, sampler)
            run.windows.append(window)
            wrk = window.wrk
            say(
                f"{mode}: {scenario.key}: {wrk.rps:,.0f} req/s, {wrk.failed} failed; "
                f"settled in {window.end - window.load_end:.1f} s; other processes used "
                f"{window.others_cpu * 100:.0f} % of the CPUs"
            )

        run.prober = prober.stop()
        run.samples = sampler.stop()
        run.fsync_ms = fsync_probe.stop()
        run.agent_peak_rss_kib = agent.peak_rss_kib()
        run.agent_cpu_total = agent.cpu()
        events = agent.log_events()
        run.agent_events = events
        run.applied = proxy.admin_puts() if mode == "api" else syncs(events, "reloaded")
        run.syncs = syncs(events)
        run.held_drops = sum(1 for e in events if e.get("event") == "sharp drop held until a second read confirms it")
        run.agent_errors = sum(1 for e in events if e.get("level") == "error")
    return run
