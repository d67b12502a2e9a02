"""One DNS variant from start to finish: dev Consul with its DNS port, nginx, prober, every scenario.

The same scenarios, churn script, load, prober and long-lived connections as
``bench.mode_run`` (reload and api), and the same ``ModeRun``/``Window`` records, so that
``bench.analysis`` summarises all strategies alike. There is no agent: nginx asks Consul's
DNS itself (``dns``) or once at start (``dns-static``). Instances are registered with their
own loopback IP and one shared port (``bench.dns_backends``).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import cast

from bench import procfs
from bench.backends import Backends
from bench.churn import ChurnDriver, Instances
from bench.dns_backends import DnsBackends
from bench.dns_proxy import DnsProxy, Target, Variant
from bench.load import Wrk, run_wrk
from bench.mode_run import ModeRun, Window, say, settle
from bench.ports import start_with_fresh_ports
from bench.prober import ProberProcess
from bench.rawhttp import ClientError, KeepAliveClient
from bench.sampler import Sampler
from bench.scenarios import Scenario
from bench.settings import Settings
from bench.stack import Mode
from syncer.devconsul.dns_answer import DnsConfig
from syncer.devconsul.server import DevConsul
from syncer.testing.consul import ConsulWriter
from syncer.testing.wait import wait_until


class AddressedWriter(ConsulWriter):
    """Registers each instance with its own address (the churn driver passes name and port only)."""

    def __init__(self, url: str, addresses: dict[str, str]) -> None:
        super().__init__(url)
        self.addresses = addresses

    def register(
        self,
        name: str,
        instance_id: str,
        port: int,
        address: str = "",
        status: str = "passing",
        weights: dict[str, int] | None = None,
        meta: dict[str, str] | None = None,
        tags: list[str] | None = None,
    ) -> str:
        address = address or self.addresses.get(instance_id, "127.0.0.1")
        return super().register(name, instance_id, port, address, status, weights, meta, tags)


def dns_config(settings: Settings) -> DnsConfig:
    ttl = settings.dns_service_ttl
    return DnsConfig(service_ttl={"*": ttl} if ttl else {}, enable_truncate=settings.dns_enable_truncate)


def describe(variant: Variant, settings: Settings) -> str:
    """What stands where the other modes' agent command is."""
    if variant == "dns":
        return (
            f"none: nginx `resolver 127.0.0.1:<dns port> valid={settings.dns_valid:g}s` + "
            "`proxy_pass http://$dns_upstream` (web.service.consul:<port>)"
        )
    return "none: `upstream web.service.consul { server <address>:<port>; ... }` resolved once at start"


def wait_serving(port: int, expected: set[str], variant: Variant, timeout: float = 30.0) -> None:
    """Until nginx answers from the registered instances (all of them when Consul sends all)."""
    client = KeepAliveClient(port, "web", timeout=2.0)

    def ready() -> bool:
        seen: set[str] = set()
        for _ in range(20 * len(expected)):
            try:
                response = client.get("/")
            except ClientError:
                return False
            if response.status != 200 or response.backend not in expected:
                return False
            seen.add(response.backend)
        return seen == expected

    try:
        wait_until(ready, timeout=timeout, interval=0.05, message=f"{variant} nginx to serve {sorted(expected)}")
    finally:
        client.close()


def run_window(
    scenario: Scenario, settings: Settings, workdir: Path, proxy: DnsProxy, driver: ChurnDriver, sampler: Sampler
) -> Window:
    """``bench.mode_run.run_window`` without an agent to measure."""
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
    no_agent = procfs.CpuTimes(0.0, 0.0)
    return Window(scenario, start, load_end, end, writes, result, no_agent, master, {}, {}, settled, others)


def run_dns_mode(
    variant: Variant,
    settings: Settings,
    scenarios: list[Scenario],
    backends: Backends,
    dns_backends: DnsBackends,
    names: list[str],
    workdir: Path,
) -> tuple[ModeRun, int]:
    """The run, and how many DNS queries dev-consul answered meanwhile."""
    with contextlib.ExitStack() as stack:
        consul = DevConsul(port=0, dns_listen=("127.0.0.1", 0), dns_config=dns_config(settings)).start()
        stack.callback(consul.stop)
        assert consul.dns is not None
        writer = AddressedWriter(consul.url, dns_backends.addresses)
        stack.callback(writer.close)
        instances = Instances(names, dict.fromkeys(names, dns_backends.port))
        driver = ChurnDriver(writer, instances)
        driver.register_initial(settings.instances)
        writer.register("slow", "slow-1", backends.slow_port, "127.0.0.1")

        targets = [Target("web", dns_backends.port), Target("slow", backends.slow_port)]
        dns_port = consul.dns.port
        proxy = start_with_fresh_ports(
            lambda: DnsProxy(variant, workdir, targets, dns_port, settings.dns_valid, settings.worker_processes),
            DnsProxy.start,
            DnsProxy.stop,
        )
        stack.callback(proxy.stop)
        started = time.monotonic()
        wait_serving(proxy.port, set(instances.active), variant)
        run = ModeRun(cast(Mode, variant), (0.0, 0.0), describe(variant, settings))
        run.initial_sync_seconds = time.monotonic() - started
        say(f"{variant}: nginx serves the {settings.instances} initial instances")

        sampler = Sampler(proxy.nginx.pid, proxy.status_port, None).start()
        stack.callback(sampler.stop)
        prober = ProberProcess(
            workdir,
            proxy.port,
            settings.prober_threads,
            settings.holders,
            settings.hold_seconds,
            max_seconds=settings.time_limit,
        ).start()
        stack.callback(prober.kill)
        run_wrk(workdir, proxy.port, 1, settings.wrk_threads, settings.wrk_connections)

        queries_before = consul.dns.queries
        for scenario in scenarios:
            say(f"{variant}: {scenario.title.lower()}: {scenario.what} ({scenario.load_seconds:g} s of load)")
            window = run_window(scenario, settings, workdir, proxy, driver, sampler)
            run.windows.append(window)
            say(
                f"{variant}: {scenario.key}: {window.wrk.rps:,.0f} req/s, {window.wrk.failed} failed; "
                f"other processes used {window.others_cpu * 100:.0f} % of the CPUs"
            )
        queries = consul.dns.queries - queries_before
        run.prober = prober.stop()
        run.samples = sampler.stop()
    return run, queries
