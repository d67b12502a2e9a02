"""Prometheus metrics. One ``Metrics`` object per agent, on its own registry, so tests
and embedded uses never collide with the process-wide default registry.

Besides syncer's own families the registry carries the standard ``process_*`` (CPU,
memory, open descriptors, start time) and ``python_info`` collectors, and
``syncer_build_info``. The ``*_created`` series prometheus_client adds to every counter
and histogram by default are turned off: they double the series count and no alert or
dashboard uses them.
"""

from __future__ import annotations

import platform
from importlib import metadata

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, PlatformCollector, ProcessCollector

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 660.0)
_APPLY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def version() -> str:
    try:
        return metadata.version("syncer")
    except metadata.PackageNotFoundError:  # a bare checkout on sys.path
        return "unknown"


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        Info("syncer_build", "syncer's version and the Python running it", registry=r).info(
            {"version": version(), "python": platform.python_version()}
        )
        self.instances = Gauge("syncer_instances", "Healthy instances per service, as applied", ["service"], registry=r)
        self.rejected = Counter(
            "syncer_rejected_instances_total", "Instances refused by validation", ["service", "field"], registry=r
        )
        self.syncs = Counter("syncer_syncs_total", "Sync passes by outcome", ["outcome"], registry=r)
        self.reloads = Counter("syncer_reloads_total", "nginx reloads by outcome", ["outcome"], registry=r)
        self.config_tests = Counter("syncer_nginx_tests_total", "nginx -t runs by outcome", ["outcome"], registry=r)
        self.pushes = Counter(
            "syncer_pushes_total", "Upstream pushes to the dynamic endpoint by outcome", ["outcome"], registry=r
        )
        self.push_failures = Counter(
            "syncer_push_failures_total",
            "Upstreams the dynamic endpoint refused or could not store while others were pushed "
            "(ApplyResult.failed_upstreams), by upstream",
            ["service"],
            registry=r,
        )
        self.held_drops = Counter(
            "syncer_held_drops_total", "Sharp drops held for confirmation", ["service", "outcome"], registry=r
        )
        self.last_success = Gauge(
            "syncer_last_success_timestamp_seconds", "Unix time of the last successful sync", registry=r
        )
        self.consul_latency = Histogram(
            "syncer_consul_request_duration_seconds",
            "Consul query duration (blocking queries wait by design)",
            ["endpoint", "blocking"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.consul_errors = Counter(
            "syncer_consul_errors_total", "Failed Consul queries by kind", ["endpoint", "kind"], registry=r
        )
        self.change_to_applied = Histogram(
            "syncer_change_to_applied_seconds",
            "From a Consul answer carrying a change to nginx having it",
            ["mode"],
            buckets=_APPLY_BUCKETS,
            registry=r,
        )
        self.healthy = Gauge("syncer_healthy", "1 when /healthz answers 200", registry=r)
        # The multiplexed watcher (syncer/discovery/watcher.py)
        self.consul_up = Gauge("syncer_consul_up", "1 while Consul answers the liveness probe", registry=r)
        self.consul_sweeps = Counter(
            "syncer_consul_sweeps_total",
            "Re-reads of every watched service after an unexplained catalog move",
            registry=r,
        )
        self.consul_state_resets = Counter(
            "syncer_consul_state_resets_total",
            "Times Consul's index went below the highest seen (state lost)",
            registry=r,
        )
        self.watched_services = Gauge("syncer_watched_services", "Services the agent watches", registry=r)
