"""One scale run: a mode and a number of services, from a fresh dev Consul, nginx and agent
to the figures (connections, threads, memory, idle CPU, Consul requests, initial sync,
propagation of single changes).
"""

from __future__ import annotations

import contextlib
import math
import random
import statistics
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import procfs
from bench.mode_run import say
from bench.rawhttp import ClientError, KeepAliveClient
from bench.scale_procfs import FootprintSampler, Sample, rss_kib, threads
from bench.scale_settings import ScaleSettings
from bench.scale_stack import (
    BASE_BACKENDS,
    TAG,
    AgentConfig,
    Mode,
    ScaleAgent,
    ScaleProxy,
    instance_body,
    seed,
    service_names,
    start_backends,
)
from syncer.devconsul.server import DevConsul
from syncer.testing.consul import ConsulWriter
from syncer.testing.wait import WaitTimeout, wait_until

SAMPLE_HOSTS = 5  # services whose traffic proves a sync reached nginx's workers


@dataclass
class Change:
    kind: str  # "register" or "check flip"
    service: str
    propagation_ms: float
    consul_requests: int  # every read the dev Consul answered from the write to quiet again
    consul_requests_net: float  # the same less the idle rate over that window
    by_endpoint: dict[str, int] = field(default_factory=dict)


@dataclass
class ScaleResult:
    mode: Mode
    services: int
    instances: int
    max_connections: int
    initial_sync_s: float
    connections_peak: int
    connections_steady: int
    threads_peak: int
    threads_steady: int
    rss_mib: float
    rss_peak_mib: float
    idle_cpu_pct: float
    idle_seconds: float
    idle_requests_per_min: float
    idle_by_endpoint: dict[str, int]
    changes: list[Change]
    sync_durations_ms: list[float]
    change_cpu_ms: float
    """The agent's CPU time over the change phase per change: what a change costs it,
    whatever else the machine runs (wall-clock latencies stretch with the machine's load)."""
    """The agent's own "sync" durations for the measured changes: reload mode's render +
    nginx -t + reload, api mode's push."""
    rejected_connections: int
    agent_command: str
    note: str = ""
    """Set when the run could not measure everything (the initial sync never completed)."""
    timeline: list[tuple[float, int, int, float]] = field(default_factory=list)
    """(seconds since agent start, connections, threads, RSS MiB) samples."""

    def propagation(self, kind: str | None = None) -> list[float]:
        return sorted(c.propagation_ms for c in self.changes if kind is None or c.kind == kind)

    def to_dict(self) -> dict[str, Any]:
        found = asdict(self)
        del found["timeline"]  # thousands of samples: the peaks above say what matters
        return found


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: with 40 samples p99 is the maximum)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def endpoint_of(key: str) -> str:
    """``GET /v1/health/service/svc0042`` -> ``GET /v1/health/service/*`` (one row per kind)."""
    method, _, path = key.partition(" ")
    parts = path.split("?", 1)[0].split("/")
    if path.startswith("/v1/health/service/") or path.startswith("/v1/catalog/service/"):
        parts = [*parts[:4], "*"]
    return f"{method} {'/'.join(parts)}"


def requests_by_endpoint(dev: DevConsul) -> Counter[str]:
    counts: Counter[str] = Counter()
    for key, n in dev.stats()["requests"].items():
        counts[endpoint_of(key)] += n
    return counts


def _delta(after: Counter[str], before: Counter[str]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in sorted(after) if after[k] - before.get(k, 0) > 0}


def _served_by(port: int, host: str, wanted: set[str]) -> bool:
    client = KeepAliveClient(port, host, timeout=2.0)
    try:
        return all(client.get().backend in wanted for _ in range(3))
    except ClientError:
        return False
    finally:
        client.close()


def run_scale(mode: Mode, count: int, settings: ScaleSettings, workdir: Path, rng: random.Random) -> ScaleResult:
    workdir.mkdir(parents=True, exist_ok=True)
    names = service_names(count)
    change_backends = [f"chg{i:03d}" for i in range(settings.changes)]
    # Half the changes register a new instance, half flip a critical one to passing; the
    # services they touch are drawn at random (distinct, so one change never hides another).
    targets = rng.sample(names, min(settings.changes, count))
    plan = [("register" if i % 2 == 0 else "check flip", targets[i % len(targets)]) for i in range(settings.changes)]
    with contextlib.ExitStack() as stack:
        farm = start_backends(workdir / f"backends-{mode}-{count}", change_backends)
        stack.callback(farm.stop)
        dev = DevConsul(port=0).start()
        stack.callback(dev.stop)
        bodies = [
            instance_body(name, f"{name}-{i}", farm.ports[BASE_BACKENDS[i % len(BASE_BACKENDS)]])
            for name in names
            for i in range(settings.instances)
        ]
        bodies += [
            instance_body(service, f"{service}-{backend}", farm.ports[backend], status="critical")
            for (kind, service), backend in zip(plan, change_backends, strict=True)
            if kind == "check flip"
        ]
        started = time.monotonic()
        seed(dev, bodies)
        say(f"{mode} N={count}: {len(bodies)} instances registered in {time.monotonic() - started:.1f} s")
        proxy = ScaleProxy(mode, workdir, names)
        proxy.start()
        stack.callback(proxy.stop)
        agent = ScaleAgent(
            mode,
            proxy,
            dev.address,
            workdir,
            AgentConfig(settings.max_connections, settings.quiescence(mode)),
        )
        t0 = time.monotonic()
        agent.start()
        stack.callback(agent.stop)
        sampler = FootprintSampler(agent.pid, dev.port).start()
        stack.callback(sampler.stop)

        note = ""
        try:
            initial = _wait_initial_sync(proxy, agent, names, settings, rng) - t0
        except WaitTimeout:
            # Recorded as missed; the footprint during the attempt is still worth having.
            initial = math.nan
            held = sum(1 for n in proxy.upstreams().values() if n >= settings.instances)
            note = f"initial sync not reached in {settings.initial_sync_timeout:g} s: {held:,} of {count:,} in nginx"
            say(f"{mode} N={count}: {note}")
        else:
            say(f"{mode} N={count}: initial sync {initial:.2f} s")

        idle_wall, idle_by_endpoint, idle_rate, idle_cpu = math.nan, {}, 0.0, math.nan
        changes: list[Change] = []
        change_cpu_ms = math.nan
        idle_samples: list[Sample] = []
        if not note:
            # Quiet window: nothing changes in Consul.
            time.sleep(settings.settle_seconds)  # a measurement window, not a synchronisation
            cpu0, req0, idle0 = agent_cpu(agent.pid), requests_by_endpoint(dev), time.monotonic()
            time.sleep(settings.idle_seconds)
            cpu1, req1, idle1 = agent_cpu(agent.pid), requests_by_endpoint(dev), time.monotonic()
            idle_wall = idle1 - idle0
            idle_by_endpoint = _delta(req1, req0)
            idle_rate = sum(idle_by_endpoint.values()) / idle_wall
            idle_cpu = (cpu1 - cpu0) / idle_wall * 100
            idle_samples = sampler.between(idle0, idle1)
            say(f"{mode} N={count}: idle CPU {idle_cpu:.2f} %, {idle_rate * 60:.1f} requests/min")

            cpu_changes = agent_cpu(agent.pid)
            changes = _run_changes(dev, proxy, agent, farm.ports, plan, change_backends, idle_rate, settings)
            change_cpu_ms = (agent_cpu(agent.pid) - cpu_changes) * 1000 / max(1, len(changes))
            prop = [c.propagation_ms for c in changes]
            say(f"{mode} N={count}: propagation p50 {percentile(prop, 50):.1f} ms, p99 {percentile(prop, 99):.1f} ms")
        rss_now, _ = rss_kib(agent.pid)

        _, hwm = rss_kib(agent.pid)
        threads_now = threads(agent.pid)
        sampler.stop()
        agent.stop()
        timeline = [(s.at - t0, s.connections, s.threads, s.rss_kib / 1024) for s in sampler.samples]
        return ScaleResult(
            mode=mode,
            services=count,
            instances=settings.instances,
            max_connections=settings.max_connections,
            initial_sync_s=initial,
            connections_peak=sampler.peak_connections(),
            connections_steady=round(statistics.median(s.connections for s in idle_samples)) if idle_samples else 0,
            threads_peak=sampler.peak_threads(),
            threads_steady=threads_now,
            rss_mib=rss_now / 1024,
            rss_peak_mib=hwm / 1024,
            idle_cpu_pct=idle_cpu,
            idle_seconds=idle_wall,
            idle_requests_per_min=idle_rate * 60,
            idle_by_endpoint=idle_by_endpoint,
            changes=changes,
            sync_durations_ms=_change_sync_durations(agent, len(changes)),
            change_cpu_ms=change_cpu_ms,
            rejected_connections=int(dev.stats()["rejected_connections"]),
            agent_command=agent.command,
            note=note,
            timeline=timeline,
        )
    raise AssertionError("unreachable")


def agent_cpu(pid: int) -> float:
    times = procfs.cpu_times(pid)
    return times.own if times is not None else 0.0


def _wait_initial_sync(
    proxy: ScaleProxy, agent: ScaleAgent, names: list[str], settings: ScaleSettings, rng: random.Random
) -> float:
    """Until nginx holds every service with all its instances and real traffic to a sample
    of them (the first, the last and a few at random) reaches their backends; returns when."""
    wanted = set(names)
    sample = [names[0], names[-1], *rng.sample(names, min(SAMPLE_HOSTS, len(names)))]

    def synced() -> float | None:
        agent.check_alive()
        held = proxy.upstreams()
        if sum(1 for name in wanted if held.get(name, 0) >= settings.instances) < len(wanted):
            return None
        if not all(_served_by(proxy.port, name, set(BASE_BACKENDS)) for name in sample):
            return None
        return time.monotonic()

    # api mode's full listing costs nginx ~0.1 s at 2,000 upstreams: poll it gently
    return wait_until(synced, timeout=settings.initial_sync_timeout, interval=0.2, message="the initial sync")


def _run_changes(
    dev: DevConsul,
    proxy: ScaleProxy,
    agent: ScaleAgent,
    ports: dict[str, int],
    plan: list[tuple[str, str]],
    backends: list[str],
    idle_rate: float,
    settings: ScaleSettings,
) -> list[Change]:
    writer = ConsulWriter(dev.url)
    changes: list[Change] = []
    try:
        for (kind, service), backend in zip(plan, backends, strict=True):
            agent.check_alive()
            client = KeepAliveClient(proxy.port, service, timeout=2.0)
            before = requests_by_endpoint(dev)
            written = time.monotonic()
            if kind == "register":
                writer.register(service, f"{service}-{backend}", ports[backend], tags=[TAG])
            else:
                writer.check(f"service:{service}-{backend}", "passing")
            seen = _wait_backend(client, backend, written + settings.change_timeout)
            client.close()
            time.sleep(settings.change_gap)  # let the change's reads finish before counting
            after, quiet = requests_by_endpoint(dev), time.monotonic()
            # the agent only reads: the bench's own write is not part of what a change costs
            by_endpoint = {k: n for k, n in _delta(after, before).items() if k.startswith("GET ")}
            total = sum(by_endpoint.values())
            changes.append(
                Change(
                    kind=kind,
                    service=service,
                    propagation_ms=(seen - written) * 1000,
                    consul_requests=total,
                    consul_requests_net=max(0.0, total - idle_rate * (quiet - written)),
                    by_endpoint=by_endpoint,
                )
            )
    finally:
        writer.close()
    return changes


def _wait_backend(client: KeepAliveClient, backend: str, deadline: float) -> float:
    """Send requests until one reaches ``backend``; returns when it answered. A 1 ms pause
    between requests leaves the GIL to the dev Consul, which runs in this process."""
    while True:
        try:
            if client.get().backend == backend:
                return time.monotonic()
        except ClientError:
            pass  # reload mode: a worker going away closes the connection; the next reconnects
        time.sleep(0.001)
        if time.monotonic() >= deadline:
            raise TimeoutError(f"backend {backend} never served through nginx")


def _change_sync_durations(agent: ScaleAgent, count: int) -> list[float]:
    """Durations of the agent's last ``count`` syncs that changed something."""
    syncs = [
        float(e["duration"]) * 1000
        for e in agent.log_events()
        if e.get("event") == "sync" and e.get("reason") != "initial" and e.get("changed")
    ]
    return syncs[-count:]
