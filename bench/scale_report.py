"""The scale scenario's report: a Markdown table per figure, ``scale.json`` and ``scale.png``."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.machine import Machine
from bench.scale_run import Change, ScaleResult, percentile
from bench.scale_settings import ScaleSettings

COLORS = {"reload": "tab:red", "api": "tab:blue"}
# The targets, at 2,000 services x 3 instances (recorded, never asserted).
TARGET_SYNC_S = 5.0
TARGET_API_P99_MS = 50.0
TARGET_IDLE_CPU_PCT = 2.0
TARGET_RSS_MIB = 100.0
LIVENESS_PER_MIN = 60 / 5.0  # /v1/status/leader every 5 s while Consul answers
RESYNC_INTERVAL_S = 600.0  # consul.resync_interval's default


@dataclass
class ScaleRun:
    command: str
    date: str
    seconds: float
    machine: Machine
    busy_before: float
    loadavg_end: str
    settings: ScaleSettings
    results: list[ScaleResult] = field(default_factory=list)
    others_busy: float = 0.0
    """Share of all CPUs other processes used during the run."""


def _f(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def _mark(ok: bool) -> str:
    return "met" if ok else "**missed**"


def table(run: ScaleRun) -> list[str]:
    header = ["figure"] + [f"{r.mode} N={r.services:,}" for r in run.results]
    rows: list[tuple[str, list[str]]] = [
        ("initial sync, agent start → every service in nginx (s)", [_f(r.initial_sync_s, 2) for r in run.results]),
        (
            "propagation p50 / p99, write → traffic (ms)",
            [f"{_f(percentile(r.propagation(), 50))} / {_f(percentile(r.propagation(), 99))}" for r in run.results],
        ),
        (
            "… registrations p50 / max (ms)",
            [
                f"{_f(percentile(r.propagation('register'), 50))} / "
                f"{_f(max(r.propagation('register'), default=math.nan))}"
                for r in run.results
            ],
        ),
        (
            "… check flips p50 / max (ms)",
            [
                f"{_f(percentile(r.propagation('check flip'), 50))} / "
                f"{_f(max(r.propagation('check flip'), default=math.nan))}"
                for r in run.results
            ],
        ),
        (
            "agent's apply per change p50 / max (ms): reload = render + nginx -t + reload; api = push",
            [
                f"{_f(percentile(r.sync_durations_ms, 50))} / {_f(max(r.sync_durations_ms, default=math.nan))}"
                for r in run.results
            ],
        ),
        (
            "agent CPU per change, over the change phase (ms)",
            [_f(r.change_cpu_ms) for r in run.results],
        ),
        (
            "TCP connections to Consul, peak / steady",
            [f"{r.connections_peak} / {r.connections_steady}" for r in run.results],
        ),
        ("threads, peak / steady", [f"{r.threads_peak} / {r.threads_steady}" for r in run.results]),
        ("RSS after the idle window / peak (MiB)", [f"{_f(r.rss_mib)} / {_f(r.rss_peak_mib)}" for r in run.results]),
        ("idle CPU (% of one core)", [_f(r.idle_cpu_pct, 2) for r in run.results]),
        ("Consul requests per idle minute (measured)", [_f(r.idle_requests_per_min) for r in run.results]),
        (
            "… plus the resync trickle once it runs (N x 60 / 600 s)",
            [_f(r.services * 60 / RESYNC_INTERVAL_S) for r in run.results],
        ),
        (
            "Consul requests per change, median (raw / less the idle rate)",
            [
                f"{_f(percentile([float(c.consul_requests) for c in r.changes], 50), 0)} / "
                f"{_f(percentile([c.consul_requests_net for c in r.changes], 50))}"
                for r in run.results
            ],
        ),
        ("connections Consul refused (its 200-per-client cap)", [str(r.rejected_connections) for r in run.results]),
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([label, *cells]) + " |" for label, cells in rows]
    notes = [f"- {r.mode} N={r.services:,}: {r.note}" for r in run.results if r.note]
    return lines + (["", "Runs that could not measure everything:", "", *notes] if notes else [])


def targets(run: ScaleRun) -> list[str]:
    biggest = max((r.services for r in run.results), default=0)
    at = [r for r in run.results if r.services == biggest]
    lines = [f"Targets of issue 8 at the largest N measured here ({biggest:,} services x 3 instances):", ""]
    lines += ["| target | mode | measured | verdict |", "|---|---|---|---|"]
    for r in at:
        why = f" ({r.note})" if r.note else ""
        lines.append(
            f"| initial sync ≤ {TARGET_SYNC_S:g} s | {r.mode} | {_f(r.initial_sync_s, 2)} s{why} | "
            f"{_mark(r.initial_sync_s <= TARGET_SYNC_S)} |"
        )
        if r.mode == "api":
            p99 = percentile(r.propagation(), 99)
            lines.append(
                f"| change → applied p99 ≤ {TARGET_API_P99_MS:g} ms | api | {_f(p99)} ms | "
                f"{_mark(p99 <= TARGET_API_P99_MS)} |"
            )
        lines.append(
            f"| idle CPU ≤ {TARGET_IDLE_CPU_PCT:g} % | {r.mode} | {_f(r.idle_cpu_pct, 2)} % | "
            f"{_mark(r.idle_cpu_pct <= TARGET_IDLE_CPU_PCT)} |"
        )
        lines.append(
            f"| RSS ≤ {TARGET_RSS_MIB:g} MiB | {r.mode} | {_f(r.rss_peak_mib)} MiB (peak) | "
            f"{_mark(r.rss_peak_mib <= TARGET_RSS_MIB)} |"
        )
        lines.append(
            f"| connections ≤ {r.max_connections} | {r.mode} | {r.connections_peak} (peak) | "
            f"{_mark(r.connections_peak <= r.max_connections)} |"
        )
    return lines


def per_change_breakdown(run: ScaleRun) -> list[str]:
    """What one change costs Consul, by endpoint (median over the run's changes of each kind)."""
    lines = ["| mode | N | kind | requests by endpoint (median per change) |", "|---|---|---|---|"]
    for r in run.results:
        for kind in ("register", "check flip"):
            changes = [c for c in r.changes if c.kind == kind]
            if not changes:
                continue
            endpoints = sorted({e for c in changes for e in c.by_endpoint})
            cells = [
                f"`{e}` {statistics_median([c.by_endpoint.get(e, 0) for c in changes]):g}"
                for e in endpoints
                if statistics_median([c.by_endpoint.get(e, 0) for c in changes]) > 0
            ]
            lines.append(f"| {r.mode} | {r.services:,} | {kind} | {', '.join(cells) or 'none'} |")
    return lines


def statistics_median(values: list[int]) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    mid = len(ordered) // 2
    return float(ordered[mid]) if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def idle_breakdown(run: ScaleRun) -> list[str]:
    lines = ["| mode | N | window (s) | requests by endpoint |", "|---|---|---|---|"]
    for r in run.results:
        cells = ", ".join(f"`{e}` {n}" for e, n in r.idle_by_endpoint.items()) or "none"
        lines.append(f"| {r.mode} | {r.services:,} | {r.idle_seconds:.1f} | {cells} |")
    return lines


def render(run: ScaleRun, figure: str) -> str:
    m, s = run.machine, run.settings
    lines = [
        "# syncer scale scenario: N services x 3 instances, one agent, ≤ 16 Consul connections",
        "",
        "## Run",
        "",
        f"- Command: `{run.command}` (from the repository root; `make bench-scale` runs `python -m bench.scale`)",
        f"- Date: {run.date}; the run took {run.seconds:.0f} s",
        f"- Machine: {m.nproc} CPUs ({m.cpu_model}), {m.memory_gib:.1f} GiB memory, Linux {m.kernel}; "
        f"{m.nginx}, Python {m.python}",
        f"- Machine load: load average {m.loadavg} before, {run.loadavg_end} after; "
        f"{run.busy_before * 100:.0f} % of all CPUs busy with other work just before the run, "
        f"{run.others_busy * 100:.0f} % on average during it. The machine was shared with other work while "
        "this ran: latencies and start-up times move with that load.",
        f"- Per mode and N: a fresh dev Consul (in the bench process), N services tagged `scale` with "
        f"{s.instances} passing instances each, a real nginx (the `syncer nginx-example` config for those N "
        "services: one `upstream` block per service in both modes, one worker, `lua_shared_dict` 64m (the "
        "example's default 10m also held 2,000 upstreams x 10 servers when checked), "
        "`map_hash_max_size 65536` for the 2 x N Host names), the agent as a subprocess "
        f"(`--tag scale`, `consul.max_connections = {s.max_connections}`, reload quiescence "
        f"{s.reload_quiescence[0]:g}/{s.reload_quiescence[1]:g} s, api {s.api_quiescence[0]:g}/"
        f"{s.api_quiescence[1]:g} s).",
    ]
    if s.quick:
        lines.append(f"- **Quick run** (`--quick`): N = {', '.join(map(str, s.sizes))} only, short windows.")
    lines += ["", "## Figures", "", *table(run), "", f"![scale]({figure})", "", "## Targets", "", *targets(run)]
    lines += [
        "",
        "## What Consul pays",
        "",
        "One change, by endpoint (the window runs from the write until the change reached nginx's traffic "
        f"plus {s.change_gap:g} s):",
        "",
        *per_change_breakdown(run),
        "",
        f"Idle windows ({s.idle_seconds:g} s of no change, {s.settle_seconds:g} s after the initial sync):",
        "",
        *idle_breakdown(run),
        "",
        f"The idle windows fall within the agent's first minutes, before the resync trickle starts: each "
        f"service is re-read once it was last read {RESYNC_INTERVAL_S / 2:g} s ago, spread over "
        f"`resync_interval` ({RESYNC_INTERVAL_S:g} s), so from then on an idle minute also costs N x 60 / "
        f"{RESYNC_INTERVAL_S:g} targeted reads (the table's next row). The liveness probe is "
        f"{LIVENESS_PER_MIN:g} a minute; each detector's blocking query is re-issued when its wait "
        "(300 s) ends.",
        "",
        "## Method",
        "",
        "- **Connections** to Consul: sockets the agent holds (its `/proc/<pid>/fd`) whose TCP peer is the dev "
        "Consul's port, from `/proc/<pid>/net/tcp{,6}`, any state but LISTEN; sampled every 50 ms from the "
        "agent's start to its stop (a connection that lives less than 50 ms can be missed). Steady: the "
        "median over the idle window. Also: how many connections the dev Consul refused past its per-client cap.",
        "- **Threads**, **RSS**: `/proc/<pid>/status` (`Threads`, `VmRSS`, `VmHWM`).",
        "- **Idle CPU**: the agent's utime + stime over the idle window, as a share of one core.",
        "- **Consul requests**: the dev Consul's own per-path counters (`GET /_dev/stats`), deltas over each window.",
        "- **Initial sync**: from the agent's start until nginx holds every service with all its instances "
        "(reload: the rendered file; api: `GET /upstreams` of the admin API, polled every 0.2 s) and requests "
        "through nginx with the Host of the first, the last and five random services reach their backends.",
        "- **Propagation**: half the changes register a new passing instance on a random service, half flip "
        "an instance registered `critical` before the start to `passing`; each uses a backend no other instance "
        "uses, and the time is from just before the Consul write until the first request through nginx "
        "(back-to-back keep-alive requests with that service's Host) that this backend answers.",
        "- **Apply per change**: the `duration` of the agent's own `sync` log lines for those changes.",
        "- **Agent CPU per change**: the agent's utime + stime from the first change's write to the last "
        "change's quiet end, divided by the number of changes (idle costs over that window included, and small).",
    ]
    return "\n".join(lines) + "\n"


def figure(run: ScaleRun, path: Path) -> Path:
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    panels: list[tuple[str, Callable[[ScaleResult], float], float | None]] = [
        ("initial sync (s)", lambda r: r.initial_sync_s, TARGET_SYNC_S),
        ("propagation p99 (ms, log)", lambda r: percentile(r.propagation(), 99), TARGET_API_P99_MS),
        ("idle CPU (% of a core)", lambda r: r.idle_cpu_pct, TARGET_IDLE_CPU_PCT),
        ("peak RSS (MiB)", lambda r: r.rss_peak_mib, TARGET_RSS_MIB),
        ("peak connections to Consul", lambda r: float(r.connections_peak), None),
        ("Consul requests per idle minute", lambda r: r.idle_requests_per_min, None),
    ]
    for ax, (title, value, target) in zip(axes.flat, panels, strict=True):
        for mode in dict.fromkeys(r.mode for r in run.results):
            rs = sorted((r for r in run.results if r.mode == mode), key=lambda r: r.services)
            ax.plot([r.services for r in rs], [value(r) for r in rs], marker="o", color=COLORS.get(mode), label=mode)
        if target is not None:
            ax.axhline(target, color="0.4", linestyle=":", linewidth=1, label="target at 2,000")
        if title.startswith("peak connections"):
            ax.axhline(run.settings.max_connections, color="0.4", linestyle=":", linewidth=1, label="budget")
        finite = [v for r in run.results if math.isfinite(v := value(r)) and v > 0]
        if "log" in title and finite:
            ax.set_yscale("log")
        elif finite:
            ax.set_ylim(bottom=0)
        if finite:
            ax.set_xscale("log")
        else:
            ax.text(0.5, 0.5, "not measured", transform=ax.transAxes, ha="center", color="0.4")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("services (x 3 instances)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("syncer at scale: one agent, every service selected by tag", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def to_json(run: ScaleRun) -> dict[str, Any]:
    return {
        "command": run.command,
        "date": run.date,
        "seconds": run.seconds,
        "machine": run.machine.to_dict(),
        "busy_before": run.busy_before,
        "others_busy": run.others_busy,
        "loadavg_end": run.loadavg_end,
        "settings": asdict(run.settings),
        "results": [r.to_dict() for r in run.results],
    }


def load(path: Path) -> ScaleRun:
    """A run back from its scale.json (to re-render the report)."""
    data = json.loads(path.read_text())
    settings = data["settings"]
    for key in ("sizes", "modes", "reload_quiescence", "api_quiescence"):
        settings[key] = tuple(settings[key])
    results = []
    for r in data["results"]:
        r["changes"] = [Change(**c) for c in r["changes"]]
        results.append(ScaleResult(**r))
    return ScaleRun(
        command=data["command"],
        date=data["date"],
        seconds=data["seconds"],
        machine=Machine(**data["machine"]),
        busy_before=data["busy_before"],
        loadavg_end=data["loadavg_end"],
        settings=ScaleSettings(**settings),
        results=results,
        others_busy=data["others_busy"],
    )


def write(run: ScaleRun, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    png = figure(run, out / "scale.png")
    path = out / "scale.md"
    path.write_text(render(run, png.name))
    (out / "scale.json").write_text(json.dumps(to_json(run), indent=1) + "\n")
    return path
