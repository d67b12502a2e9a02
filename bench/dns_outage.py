"""Consul goes away: what traffic does in each strategy.

Two instances of ``web`` are served; then the dev Consul stops (HTTP API and DNS alike) and
traffic is watched for a few seconds. reload and api keep the last state the agent
applied; with DNS, nginx 1.22 has no stale answers: once a worker's cached answer expires,
each request waits ``resolver_timeout`` and fails with 502.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.dns_mode import AddressedWriter, dns_config, wait_serving
from bench.dns_move import KEEP, KEEP_IP, MOVER_IP, OLD, STRATEGIES, Listener, MoveResult, watch
from bench.dns_proxy import DnsProxy, Target
from bench.mode_run import say
from bench.ports import free_ports, start_with_fresh_ports
from bench.settings import Settings
from bench.stack import Agent, Mode, Proxy
from syncer.devconsul.server import DevConsul


@dataclass
class OutageResult:
    strategy: str
    seconds: float
    requests: int = 0
    ok: int = 0
    failed: dict[str, int] = field(default_factory=dict)


def run_outage(strategy: str, settings: Settings, workdir: Path) -> OutageResult:
    (port,) = free_ports(1)
    with contextlib.ExitStack() as stack:
        for name, host in ((KEEP, KEEP_IP), (OLD, MOVER_IP)):
            listener = Listener(workdir, f"outage-{name}", host, port, backend=name)
            stack.callback(listener.stop)
            listener.start()
        dns = strategy == "dns"
        consul = DevConsul(port=0, dns_listen=("127.0.0.1", 0) if dns else None, dns_config=dns_config(settings))
        consul.start()
        stack.callback(consul.stop)
        writer = AddressedWriter(consul.url, {KEEP: KEEP_IP, OLD: MOVER_IP})
        stack.callback(writer.close)
        writer.register("web", KEEP, port)
        writer.register("web", OLD, port)
        if dns:
            assert consul.dns is not None
            dns_port = consul.dns.port
            proxy: DnsProxy | Proxy = start_with_fresh_ports(
                lambda: DnsProxy(
                    "dns", workdir, [Target("web", port)], dns_port, settings.dns_valid, settings.worker_processes,
                    label="outage-dns",
                ),
                DnsProxy.start,
                DnsProxy.stop,
            )  # fmt: skip
            stack.callback(proxy.stop)
        else:
            mode: Mode = "reload" if strategy == "reload" else "api"
            folder = workdir / "outage"
            folder.mkdir(exist_ok=True)
            proxy = start_with_fresh_ports(
                lambda: Proxy(mode, workdir, settings.worker_processes, label=f"outage-{mode}"), Proxy.start, Proxy.stop
            )
            stack.callback(proxy.stop)
            quiescence = settings.reload_quiescence if mode == "reload" else settings.api_quiescence
            agent = Agent(mode, proxy, consul.address, folder, quiescence)
            stack.callback(agent.stop)
            agent.start()
        wait_serving(proxy.port, {KEEP, OLD}, "dns")
        consul.stop()
        seen = MoveResult(strategy, settings.dns_move_seconds)
        watch(proxy.port, settings.dns_move_seconds, time.monotonic(), seen)
    result = OutageResult(strategy, seen.seconds, seen.requests, sum(seen.by_backend.values()), seen.failed)
    say(
        f"Consul down, {strategy}: {result.ok} of {result.requests} requests answered, "
        f"{sum(result.failed.values())} failed in {result.seconds:g} s"
    )
    return result


def run_outages(settings: Settings, workdir: Path) -> list[OutageResult]:
    return [run_outage(strategy, settings, workdir) for strategy in STRATEGIES]
