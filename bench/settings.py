"""Every knob of a run in one frozen value: the default run and the ``--quick`` one."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Settings:
    quick: bool
    instances: int = 10
    """Active instances of the churned service ("web"); a rolling deploy replaces all."""
    worker_processes: int = 2
    """nginx workers of the proxy under test (one per core on the reference machine)."""
    wrk_threads: int = 2
    wrk_connections: int = 64
    holders: int = 50
    """Long-lived keep-alive connections, each a long-poll through nginx to a slow backend."""
    hold_seconds: float = 10.0
    """How long the slow backend holds each long-poll before answering."""
    prober_threads: int = 4
    baseline_seconds: float = 10.0
    steady_changes: int = 30
    steady_interval: float = 1.0
    rolling_deploys: int = 3
    rolling_span: float = 2.0
    rolling_gap: float = 4.0
    high_changes: int = 120
    high_interval: float = 0.1
    lead_seconds: float = 1.0
    """Load runs this long before the first Consul write of a scenario."""
    tail_seconds: float = 3.0
    """...and this long after the last one."""
    min_settle_seconds: float = 1.0
    hotpath_rounds: int = 6
    hotpath_seconds: float = 3.0
    hotpath_warmup: bool = True
    reload_quiescence: tuple[float, float] = (0.1, 1.0)
    """--quiescence-min/--quiescence-max given to the reload-mode agent (shipped default 1 s / 5 s)."""
    api_quiescence: tuple[float, float] = (0.0, 0.0)
    # DNS strategy (bench/dns_*.py) -------------------------------------------------------
    dns_valid: float = 1.0
    """nginx ``resolver ... valid=``: how long each worker keeps a DNS answer."""
    dns_service_ttl: float = 0.0
    """dev-consul's ``dns_config.service_ttl`` (Consul's default 0; ``valid=`` overrides it in nginx)."""
    dns_enable_truncate: bool = True
    """``dns_config.enable_truncate``: set TC on cut UDP answers, so nginx asks again over TCP and
    sees every instance (Consul's default false leaves nginx 3 random instances per answer)."""
    dns_move_seconds: float = 4.0
    """How long traffic is watched after an instance moves to another port."""
    time_limit: float = 900.0
    """The whole run is aborted (and cleaned up) after this many seconds."""

    @property
    def settle_max(self) -> float:
        """Longest wait for "shutting down" workers to finish between scenarios."""
        return self.hold_seconds + 3.0

    @property
    def registrations(self) -> int:
        """Registrations per mode: the initial set plus every "register" of the churn script."""
        return (
            self.instances + self.steady_changes // 2 + self.rolling_deploys * self.instances + self.high_changes // 2
        )

    @property
    def changes(self) -> int:
        return self.steady_changes + 2 * self.rolling_deploys * self.instances + self.high_changes


def default_settings() -> Settings:
    return Settings(quick=False)


def quick_settings() -> Settings:
    """About 45 s: the same pieces and scenarios, fewer changes (the report says so)."""
    return replace(
        Settings(quick=True),
        holders=20,
        hold_seconds=2.0,
        baseline_seconds=2.0,
        steady_changes=4,
        rolling_deploys=1,
        high_changes=20,
        lead_seconds=0.5,
        tail_seconds=1.5,
        min_settle_seconds=0.3,
        hotpath_rounds=1,
        hotpath_seconds=2.0,
        hotpath_warmup=False,
        dns_move_seconds=2.5,
        time_limit=240.0,
    )
