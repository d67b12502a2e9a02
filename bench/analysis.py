"""From raw measurements to the figures of the report: propagation per change,
percentiles, per-scenario summaries and time series. Pure functions of the data."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bench.backends import Seen
from bench.churn import Write
from bench.mode_run import ModeRun, Window
from bench.prober import BIN
from bench.stack import Applied


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); q in 0..100."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Change:
    """One Consul write and when the traffic showed it (milliseconds after the write).

    ``backend_ms``: from the backends' request log (every request, ~1 ms resolution);
    ``prober_ms``: from the prober's own responses (coarser: it sees a share of them).
    Register: until the new instance's first request; deregister: until the old one's
    last. ``None``: the traffic never showed the instance (e.g. registered and removed
    within one batched reload).
    """

    action: str
    instance: str
    backend_ms: float | None
    prober_ms: float | None
    to_apply_ms: float | None = None
    """Write → the apply that delivered it (api: PUT answered; reload: ``nginx -s reload`` returned)."""
    after_apply_ms: float | None = None
    """That apply → the traffic showing the change."""
    behind_sync_ms: float | None = None
    """The write came while the agent was still in an earlier sync: how long until that sync ended."""


SLOW_MS = 50.0  # the api target: changes slower than this are looked at more closely

# nginx writes $msec after the PUT's answer, and traffic can show the change just before it
APPLY_TOLERANCE = 0.005


def delivered_by(applied: Sequence[Applied], written: float, observed: float) -> Applied | None:
    """The last apply that ended between the write and (just after) the traffic showing it."""
    found = None
    for a in applied:
        if written <= a.end <= observed + APPLY_TOLERANCE and (found is None or a.end > found.end):
            found = a
    return found


def changes(
    writes: Iterable[Write],
    seen: dict[str, Seen],
    first: dict[str, float],
    last: dict[str, float],
    applied: Sequence[Applied] = (),
    busy: Sequence[Applied] = (),
) -> list[Change]:
    out = []
    for w in writes:
        behind = next(((b.end - w.wall) * 1000 for b in busy if b.start <= w.wall < b.end), None)
        s = seen.get(w.instance)
        if w.action == "register":
            backend = (s.first - w.wall) * 1000 if s else None
            prober = (first[w.instance] - w.started) * 1000 if w.instance in first else None
        else:
            backend = (s.last - w.wall) * 1000 if s else None
            prober = (last[w.instance] - w.started) * 1000 if w.instance in last else None
        to_apply = after_apply = None
        if backend is not None:
            observed = w.wall + backend / 1000
            by = delivered_by(applied, w.wall, observed)
            if by is not None:
                to_apply, after_apply = (by.end - w.wall) * 1000, max(0.0, observed - by.end) * 1000
        # nginx's $msec has 1 ms steps and a clock cached per event-loop turn: clamp at 0
        out.append(
            Change(
                w.action,
                w.instance,
                None if backend is None else max(0.0, backend),
                None if prober is None else max(0.0, prober),
                to_apply,
                after_apply,
                behind,
            )
        )
    return out


@dataclass(frozen=True)
class Spread:
    n: int  # changes
    observed: int  # changes the traffic showed
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None

    @staticmethod
    def of(values: Sequence[float | None]) -> Spread:
        got = [v for v in values if v is not None]
        return Spread(
            len(values),
            len(got),
            percentile(got, 50),
            percentile(got, 95),
            percentile(got, 99),
            max(got) if got else None,
        )


def spreads(items: Sequence[Change], source: str = "backend") -> dict[str, Spread]:
    def pick(c: Change) -> float | None:
        value: float | None = getattr(c, f"{source}_ms")
        return value

    return {
        "all": Spread.of([pick(c) for c in items]),
        "register": Spread.of([pick(c) for c in items if c.action == "register"]),
        "deregister": Spread.of([pick(c) for c in items if c.action == "deregister"]),
    }


def _between(events: Iterable[Sequence[Any]], start: float, end: float) -> list[Sequence[Any]]:
    return [e for e in events if start <= e[0] < end]


def _counter_delta(before: dict[str, float], after: dict[str, float], prefix: str, outcome: str | None = None) -> int:
    total = 0.0
    for key, value in after.items():
        if key.startswith(prefix + "{") and (outcome is None or f"outcome={outcome}" in key):
            total += value - before.get(key, 0.0)
    return round(total)


@dataclass
class Series:
    """Time series of one window, seconds relative to the start of its load."""

    t: list[float] = field(default_factory=list)
    workers: list[int] = field(default_factory=list)
    shutting_down: list[int] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    rps_t: list[float] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)
    err_t: list[float] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)
    changes: list[float] = field(default_factory=list)
    load_end: float = 0.0


@dataclass
class WindowSummary:
    mode: str
    key: str
    title: str
    what: str
    seconds: float
    changes: list[Change]
    propagation: dict[str, Spread]
    propagation_prober: dict[str, Spread]
    to_apply: Spread
    after_apply: Spread
    wrk: dict[str, Any]
    throughput_vs_baseline: float | None
    prober_ok: int
    prober_failed: dict[str, int]  # kind -> count (plain dicts: dataclasses.asdict mangles Counters)
    holders_ok: int
    holders_failed: dict[str, int]
    reloads: int
    pushes: int
    consul_queries: int
    syncs: int
    apply_ms_p50: float | None
    apply_ms_max: float | None
    put_ms_p50: float | None  # api: the admin PUT alone (request time in nginx's log)
    put_ms_max: float | None
    fsync_ms: Spread  # the fsync probe on the agent's filesystem during the window
    max_workers: int
    max_shutting_down: int
    rss_start_mib: float
    rss_peak_mib: float
    agent_cpu_s: float
    agent_children_cpu_s: float
    agent_peak_rss_mib: float
    master_cpu_s: float
    settled: bool
    others_cpu: float
    write_errors: int
    series: Series

    @property
    def failed_total(self) -> int:
        return int(self.wrk["failed"]) + sum(self.prober_failed.values()) + sum(self.holders_failed.values())


def _sync_durations(events: list[dict[str, object]], wall_start: float, wall_end: float) -> list[float]:
    out = []
    for e in events:
        if e.get("event") != "sync" or e.get("action") == "unchanged":
            continue
        try:
            at = datetime.fromisoformat(str(e["timestamp"]).replace("Z", "+00:00")).timestamp()
        except (KeyError, ValueError):
            continue
        duration = e.get("duration")
        if wall_start <= at < wall_end and isinstance(duration, int | float):
            out.append(float(duration) * 1000)
    return out


def summarise_window(
    run: ModeRun,
    window: Window,
    seen: dict[str, Seen],
    baseline_rps: float | None,
    agent_events: list[dict[str, object]],
    wall_offset: float,
) -> WindowSummary:
    start, end = window.start, window.end
    prober, holders = run.prober["prober"], run.prober["holders"]
    items = changes(window.writes, seen, prober["first"], prober["last"], run.applied, run.syncs)
    p_err = _between(prober["errors"], start, end)
    h_err = _between(holders["errors"], start, end)
    samples = [s for s in run.samples if start - 0.05 <= s.t <= end]
    series = Series(load_end=window.load_end - start)
    for s in samples:
        series.t.append(s.t - start)
        series.workers.append(s.workers)
        series.shutting_down.append(s.shutting_down)
        series.rss_mib.append(s.nginx_rss_kib / 1024)
    for a, b in itertools.pairwise(samples):
        if a.requests is not None and b.requests is not None and b.t > a.t:
            series.rps_t.append(b.t - start)
            series.rps.append(max(0, b.requests - a.requests) / (b.t - a.t))
    bins: Counter[int] = Counter(int((e[0] - start) / BIN) for e in p_err + h_err)
    n_bins = max(1, math.ceil((end - start) / BIN))
    series.err_t = [i * BIN for i in range(n_bins)]
    series.errors = [bins.get(i, 0) for i in range(n_bins)]
    series.changes = [w.started - start for w in window.writes]
    syncs = _sync_durations(agent_events, start + wall_offset, end + wall_offset)
    agent_rss = [s.agent_rss_kib for s in samples if s.agent_rss_kib is not None]
    puts = [(a.end - a.start) * 1000 for a in run.applied if start + wall_offset <= a.end < end + wall_offset]
    rps = window.wrk.rps
    return WindowSummary(
        mode=run.mode,
        key=window.scenario.key,
        title=window.scenario.title,
        what=window.scenario.what,
        seconds=window.wrk.seconds,
        changes=items,
        propagation=spreads(items, "backend"),
        propagation_prober=spreads(items, "prober"),
        to_apply=spreads(items, "to_apply")["all"],
        after_apply=spreads(items, "after_apply")["all"],
        wrk=window.wrk.to_dict(),
        throughput_vs_baseline=rps / baseline_rps if baseline_rps else None,
        prober_ok=sum(v for k, v in prober["ok_bins"].items() if start <= int(k) * BIN < end),
        prober_failed=dict(Counter(str(e[1]) for e in p_err).most_common()),
        holders_ok=sum(v for k, v in holders["ok_bins"].items() if start <= int(k) * BIN < end),
        holders_failed=dict(Counter(str(e[1]) for e in h_err).most_common()),
        reloads=_counter_delta(window.metrics_before, window.metrics_after, "syncer_reloads_total", "ok"),
        pushes=_counter_delta(window.metrics_before, window.metrics_after, "syncer_pushes_total", "ok"),
        consul_queries=_counter_delta(
            window.metrics_before, window.metrics_after, "syncer_consul_request_duration_seconds_count"
        ),
        syncs=len(syncs),
        apply_ms_p50=percentile(syncs, 50),
        apply_ms_max=max(syncs) if syncs else None,
        put_ms_p50=percentile(puts, 50) if run.mode == "api" else None,
        put_ms_max=max(puts) if puts and run.mode == "api" else None,
        fsync_ms=Spread.of([ms for t, ms in run.fsync_ms if start <= t < end]),
        max_workers=max((s.workers + s.shutting_down for s in samples), default=0),
        max_shutting_down=max((s.shutting_down for s in samples), default=0),
        rss_start_mib=samples[0].nginx_rss_kib / 1024 if samples else 0.0,
        rss_peak_mib=max((s.nginx_rss_kib for s in samples), default=0) / 1024,
        agent_cpu_s=window.agent_cpu.own,
        agent_children_cpu_s=window.agent_cpu.children,
        agent_peak_rss_mib=max(agent_rss, default=0) / 1024,
        master_cpu_s=window.master_cpu,
        settled=window.settled,
        others_cpu=window.others_cpu,
        write_errors=sum(1 for w in window.writes if w.error),
        series=series,
    )


@dataclass
class ModeSummary:
    mode: str
    quiescence: tuple[float, float]
    agent_command: str
    windows: dict[str, WindowSummary]
    propagation: dict[str, Spread]  # every change of every scenario
    propagation_prober: dict[str, Spread]
    to_apply: Spread
    after_apply: Spread
    slow_changes: int  # propagation above SLOW_MS
    slow_behind_sync: int  # ...of which written while the agent was still in an earlier sync
    behind_sync_ms: Spread  # how long those waited for that sync
    fsync_ms: Spread  # the fsync probe over the whole mode
    sync_ms: Spread  # every sync of the agent (its JSON log's duration)
    prober_rps: float
    prober_latency_ms: dict[str, float | None]
    agent_peak_rss_mib: float
    agent_cpu_s: float
    agent_children_cpu_s: float
    held_drops: int
    agent_errors: int
    initial_sync_seconds: float


def summarise_mode(run: ModeRun, seen: dict[str, Seen]) -> ModeSummary:
    windows: dict[str, WindowSummary] = {}
    baseline_rps: float | None = None
    for window in run.windows:
        summary = summarise_window(run, window, seen, baseline_rps, run.agent_events, run.wall_offset)
        if window.scenario.key == "baseline":
            baseline_rps = window.wrk.rps
            summary.throughput_vs_baseline = 1.0
        windows[window.scenario.key] = summary
    every = [c for w in windows.values() for c in w.changes]
    slow = [c for c in every if c.backend_ms is not None and c.backend_ms > SLOW_MS]
    behind = [c for c in slow if c.behind_sync_ms is not None]
    prober = run.prober["prober"]
    span = run.prober["stopped"] - run.prober["started"]
    return ModeSummary(
        mode=run.mode,
        quiescence=run.quiescence,
        agent_command=run.agent_command,
        windows=windows,
        propagation=spreads(every, "backend"),
        propagation_prober=spreads(every, "prober"),
        to_apply=spreads(every, "to_apply")["all"],
        after_apply=spreads(every, "after_apply")["all"],
        slow_changes=len(slow),
        slow_behind_sync=len(behind),
        behind_sync_ms=Spread.of([c.behind_sync_ms for c in behind]),
        fsync_ms=Spread.of([ms for _, ms in run.fsync_ms]),
        sync_ms=Spread.of([(a.end - a.start) * 1000 for a in run.syncs]),
        prober_rps=prober["ok"] / span if span > 0 else 0.0,
        prober_latency_ms=prober["latency_ms"],
        agent_peak_rss_mib=run.agent_peak_rss_kib / 1024,
        agent_cpu_s=run.agent_cpu_total.own,
        agent_children_cpu_s=run.agent_cpu_total.children,
        held_drops=run.held_drops,
        agent_errors=run.agent_errors,
        initial_sync_seconds=run.initial_sync_seconds,
    )
