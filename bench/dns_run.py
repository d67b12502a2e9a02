"""The DNS strategy in ``python -m bench.run``: both DNS variants through every scenario,
the port move for all three strategies, and what only DNS needs counted.

``run_dns_strategies`` runs after reload and api, while their backends (the ``slow``
long-poll server among them) still run; ``count_strays`` runs after every backend has
flushed its request log and before the run's log folder is removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.backends import Backends, Seen
from bench.dns_answer_limit import probe as probe_answer_limit
from bench.dns_backends import DnsBackends, requests_after
from bench.dns_hotpath import DnsHotpath, run_dns_hotpath
from bench.dns_mode import run_dns_mode
from bench.dns_move import MoveResult, run_moves
from bench.dns_outage import OutageResult, run_outages
from bench.dns_proxy import VARIANTS, Variant
from bench.mode_run import ModeRun, say
from bench.ports import start_with_fresh_ports
from bench.scenarios import Scenario
from bench.settings import Settings

PREFIXES: dict[Variant, str] = {"dns": "d", "dns-static": "x"}


@dataclass(frozen=True)
class Strays:
    """Requests an instance received after its deregistration was written."""

    deregistrations: int
    instances: int  # deregistered instances that still got requests
    requests: int
    by_scenario: dict[str, int]


@dataclass
class DnsResult:
    settings: Settings
    runs: list[ModeRun]
    seen: dict[str, Seen]
    queries: dict[str, int]  # DNS queries dev-consul answered during each variant's scenarios
    moves: list[MoveResult]
    log_path: Path
    addresses: dict[str, str]
    hotpath: DnsHotpath
    answer_limit: dict[str, int]
    """Distinct instances one batch of requests reached: Consul's defaults / enable_truncate."""
    outages: list[OutageResult]
    strays: dict[str, Strays] = field(default_factory=dict)  # mode -> counts, every strategy


def names_for(variant: Variant, count: int) -> list[str]:
    return [f"{PREFIXES[variant]}{i:03d}" for i in range(count)]


def run_dns_strategies(
    settings: Settings, scenarios: list[Scenario], backends: Backends, workdir: Path, log_dir: Path | None
) -> DnsResult:
    pools = {variant: names_for(variant, settings.registrations) for variant in VARIANTS}
    hot_names = [f"y{i:03d}" for i in range(settings.instances)]
    everyone = [*hot_names, *(name for pool in pools.values() for name in pool)]
    dns_backends = start_with_fresh_ports(
        lambda: DnsBackends(workdir / "dns-backends", everyone, log_dir), DnsBackends.start, DnsBackends.stop
    )
    runs: list[ModeRun] = []
    queries: dict[str, int] = {}
    try:
        say(f"{len(dns_backends.addresses)} DNS-strategy backends up (one loopback IP each, port {dns_backends.port})")
        hotpath = run_dns_hotpath(settings, dns_backends, hot_names, workdir)
        answer_limit = probe_answer_limit(settings, dns_backends, hot_names, workdir)
        say(f"DNS answer limit: a batch of requests reached {answer_limit} of {len(hot_names)} instances")
        for variant in VARIANTS:
            run, answered = run_dns_mode(variant, settings, scenarios, backends, dns_backends, pools[variant], workdir)
            runs.append(run)
            queries[variant] = answered
    finally:
        dns_backends.stop()  # flushes the request log
    moves = run_moves(settings, workdir)
    outages = run_outages(settings, workdir)
    return DnsResult(
        settings,
        runs,
        dns_backends.seen(),
        queries,
        moves,
        dns_backends.log_path,
        dns_backends.addresses,
        hotpath,
        answer_limit,
        outages,
    )


def strays_of(run: ModeRun, log: Path, names: dict[str, str]) -> Strays:
    since: dict[str, float] = {}
    scenario_of: dict[str, str] = {}
    for window in run.windows:
        for write in window.writes:
            if write.action == "deregister" and not write.error:
                since[write.instance] = write.wall
                scenario_of[write.instance] = window.scenario.key
    after = requests_after(log, names, since)
    by_scenario: dict[str, int] = {}
    for name, count in after.items():
        by_scenario[scenario_of[name]] = by_scenario.get(scenario_of[name], 0) + count
    return Strays(len(since), len(after), sum(after.values()), by_scenario)


def count_strays(result: DnsResult, runs: list[ModeRun], backends: Backends) -> None:
    """Requests to deregistered instances, for every strategy (after all logs are flushed)."""
    by_port = {str(port): name for name, port in backends.ports.items()}
    by_address = {address: name for name, address in result.addresses.items()}
    for run in runs:
        dns = str(run.mode) in VARIANTS  # ModeRun.mode is typed for reload/api; DNS runs carry their variant
        log = result.log_path if dns else backends.log_path
        result.strays[run.mode] = strays_of(run, log, by_address if dns else by_port)
