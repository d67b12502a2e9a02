"""The Markdown report (and a JSON twin of its figures) from the summaries of a run."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import dns_report
from bench.analysis import ModeSummary, Spread, WindowSummary
from bench.dns_run import DnsResult
from bench.hotpath import HotpathResult
from bench.machine import Machine
from bench.routing import RoutingBench
from bench.routing import section as routing_section
from bench.settings import Settings

API_PROPAGATION_P99_MS = 50.0
HOTPATH_MIN_RATIO = 0.95
MIN_HOTPATH_ROUNDS = 3  # fewer paired rounds (--quick) give no verdict
CHURN_SCENARIOS = ("steady", "rolling", "high")

# The smoke test checks that each of these headings is in the report.
SECTIONS = (
    "## Run",
    "## Targets",
    "## Hot path: Lua balancer vs static upstream",
    "## Scenario: Baseline (no churn)",
    "## Scenario: Steady churn",
    "## Scenario: Rolling deploy",
    "## Scenario: High churn",
    "## Propagation latency, all changes",
    "## Syncer cost",
    "## Traffic steering (Consul L7 entries)",
    dns_report.TITLE,
    "## Method",
    "## Caveats",
)


@dataclass
class RunResult:
    command: str
    date: str
    seconds: float
    machine: Machine
    busy_before: float
    loadavg_end: str
    settings: Settings
    hotpath: HotpathResult
    modes: list[ModeSummary]
    figures: dict[str, str] = field(default_factory=dict)  # key -> file name in the output folder
    routing: RoutingBench | None = None  # bench/routing.py
    dns: DnsResult | None = None  # the DNS strategy's own figures (bench/dns_run.py)


def ms(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def below_1(value: float | None) -> str:
    """nginx's $request_time has 1 ms steps: 0 means under a millisecond."""
    return "< 1" if value is not None and value < 1 else ms(value)


def spread_cell(s: Spread) -> str:
    if not s.n:
        return "n/a"
    seen = "" if s.observed == s.n else f" ({s.n - s.observed} of {s.n} never seen)"
    return f"{ms(s.p50)} / {ms(s.p95)} / {ms(s.p99)}{seen}"


def kinds(counts: Mapping[str, int]) -> str:
    total = sum(counts.values())
    if not total:
        return "0"
    return f"{total} (" + ", ".join(f"{k} {v}" for k, v in Counter(counts).most_common()) + ")"


def wrk_failed(w: WindowSummary) -> str:
    errors = w.wrk["errors"]
    total = int(w.wrk["failed"])
    if not total:
        return "0"
    parts = [f"non-2xx {errors['status']}"] if errors["status"] else []
    parts += [f"{k} {v}" for k, v in errors.items() if k != "status" and v]
    return f"{total} ({', '.join(parts)})"


def _row(label: str, windows: list[WindowSummary], cell: Callable[[WindowSummary], str]) -> str:
    return f"| {label} | " + " | ".join(cell(w) for w in windows) + " |"


def scenario_table(windows: list[WindowSummary]) -> list[str]:
    lines = ["| | " + " | ".join(f"**{w.mode}**" for w in windows) + " |", "|---|" + "---|" * len(windows)]
    rows: list[tuple[str, Callable[[WindowSummary], str]]] = [
        ("Consul writes (changes)", lambda w: str(len(w.changes))),
        ("propagation, register → first request, p50 / p95 / p99 ms", lambda w: spread_cell(w.propagation["register"])),
        (
            "propagation, deregister → last request, p50 / p95 / p99 ms",
            lambda w: spread_cell(w.propagation["deregister"]),
        ),
        ("propagation, all changes, p50 / p95 / p99 ms", lambda w: spread_cell(w.propagation["all"])),
        ("propagation, all changes, max ms", lambda w: ms(w.propagation["all"].max)),
        (
            "of which write → applied (PUT answered / reload signalled), p50 / p99 ms",
            lambda w: f"{ms(w.to_apply.p50)} / {ms(w.to_apply.p99)}",
        ),
        ("of which applied → traffic, p50 / p99 ms", lambda w: f"{ms(w.after_apply.p50)} / {ms(w.after_apply.p99)}"),
        ("Consul blocking queries answered (agent)", lambda w: str(w.consul_queries)),
        (
            "wrk requests/s (vs this mode's baseline)",
            lambda w: f"{w.wrk['rps']:,.0f} ({ms((w.throughput_vs_baseline or 0) * 100, 1)} %)",
        ),
        (
            "wrk latency p50 / p99 ms",
            lambda w: f"{ms(w.wrk['latency_ms']['p50'], 2)} / {ms(w.wrk['latency_ms']['p99'], 2)}",
        ),
        ("wrk failed (non-2xx + socket errors)", wrk_failed),
        ("prober requests ok / failed", lambda w: f"{w.prober_ok:,} / {kinds(w.prober_failed)}"),
        (
            "long-lived connections: long-polls answered / failed",
            lambda w: f"{w.holders_ok:,} / {kinds(w.holders_failed)}",
        ),
        ("**failed requests, all clients**", lambda w: f"**{w.failed_total}**"),
        ("nginx reloads / admin API pushes", lambda w: f"{w.reloads} / {w.pushes}"),
        ("agent sync (apply) time, p50 / max ms", lambda w: f"{ms(w.apply_ms_p50)} / {ms(w.apply_ms_max)}"),
        ("api: of which the admin PUT, p50 / max ms", lambda w: f"{below_1(w.put_ms_p50)} / {below_1(w.put_ms_max)}"),
        (
            "fsync probe on the agent's filesystem, p50 / p99 / max ms",
            lambda w: f"{ms(w.fsync_ms.p50)} / {ms(w.fsync_ms.p99)} / {ms(w.fsync_ms.max)}",
        ),
        ("nginx workers, max all / max shutting down", lambda w: f"{w.max_workers} / {w.max_shutting_down}"),
        ("nginx RSS (master + workers), start → peak MiB", lambda w: f"{ms(w.rss_start_mib)} → {ms(w.rss_peak_mib)}"),
        (
            "agent CPU s: own / children (nginx -t, nginx -s reload)",
            lambda w: f"{w.agent_cpu_s:.2f} / {w.agent_children_cpu_s:.2f}",
        ),
        ("agent RSS, peak sampled MiB", lambda w: ms(w.agent_peak_rss_mib)),
        ("nginx master CPU s", lambda w: f"{w.master_cpu_s:.2f}"),
        ("old workers gone before the next scenario", lambda w: "yes" if w.settled else "no (settle limit)"),
        ("other processes' CPU meanwhile (share of all CPUs)", lambda w: f"{w.others_cpu * 100:.0f} %"),
    ]
    lines += [_row(label, windows, cell) for label, cell in rows]
    return lines


def _mode(result: RunResult, name: str) -> ModeSummary | None:
    return next((m for m in result.modes if m.mode == name), None)


def api_propagation_note(result: RunResult, api: ModeSummary, p99: float) -> str:
    """How much the api propagation target is missed by, and where the time went."""
    worst = max(
        (api.windows[k] for k in CHURN_SCENARIOS if k in api.windows),
        key=lambda w: w.propagation["all"].p99 or 0.0,
    )
    if p99 <= API_PROPAGATION_P99_MS:
        verdict = f"met with {ms(API_PROPAGATION_P99_MS - p99)} ms to spare"
    else:
        verdict = f"misses {API_PROPAGATION_P99_MS:g} ms by {ms(p99 - API_PROPAGATION_P99_MS)} ms"
    text = (
        f"- **api propagation p99 {ms(p99)} ms: {verdict}.** p50 is {ms(api.propagation['all'].p50)} ms; "
        f"the worst scenario is {worst.title.lower()} (p99 {ms(worst.propagation['all'].p99)} ms, "
        f"max {ms(worst.propagation['all'].max)} ms). Split at the PUT that delivered each change: write → PUT "
        f"answered p99 {ms(api.to_apply.p99)} ms, PUT answered → traffic p99 {ms(api.after_apply.p99)} ms — nginx "
        "picks a change up on its next request; the time is spent before the PUT lands."
    )
    slow_sync = worst.apply_ms_max or 0.0
    slow_put = worst.put_ms_max or 0.0
    if api.slow_changes:
        text += (
            f" Of the {api.slow_changes} changes slower than {API_PROPAGATION_P99_MS:g} ms, {api.slow_behind_sync} "
            f"were written while the agent was still busy with the sync of an earlier change (they waited p50 "
            f"{ms(api.behind_sync_ms.p50)} ms, max {ms(api.behind_sync_ms.max)} ms for it to end)."
        )
    if slow_sync > max(50.0, 3 * slow_put):
        text += (
            f" Syncs took up to {ms(slow_sync)} ms in {worst.title.lower()} while the PUTs themselves took "
            f"{'under 1 ms' if slow_put < 1 else f'at most {ms(slow_put)} ms'}: after every push the api sink "
            "rewrites the snapshot file (`ApiSink._write_snapshot` → `files.atomic_write`: fsync of the file, "
            "then of its folder) on the agent's only apply thread, so a change that arrives meanwhile waits for "
            f"those fsyncs. A probe doing the same on the same filesystem measured p50 {ms(api.fsync_ms.p50)} ms, "
            f"p99 {ms(api.fsync_ms.p99)} ms, max {ms(api.fsync_ms.max)} ms during the api run (a shared virtual "
            "disk; other users' I/O shows up here)."
        )
    queries, count = worst.consul_queries, len(worst.changes)
    watch = (
        f"the watch's rate limit of 10 queries/s (burst 2) did not bind: {queries} answers for {count} changes"
        if queries >= 0.9 * count
        else f"{queries} Consul answers for {count} changes: some answers carried several changes"
    )
    text += (
        f" Before the PUT lands: Consul answering the blocking query, the agent's watch and main loop, its "
        f"previous sync if one is still running, and CPU scheduling on {result.machine.nproc} CPUs that wrk and "
        f"nginx keep saturated; {watch} in {worst.title.lower()}."
    )
    return text


def hotpath_verdict(hp: HotpathResult) -> str:
    """met / missed; inconclusive when the paired rounds land on both sides of the target."""
    ratios = [lua.wrk.rps / st.wrk.rps for st, lua in hp.rounds if st.wrk.rps]
    if len(ratios) < MIN_HOTPATH_ROUNDS:
        return "inconclusive"
    if any(r >= HOTPATH_MIN_RATIO for r in ratios) and any(r < HOTPATH_MIN_RATIO for r in ratios):
        return "inconclusive"
    return "met" if hp.ratio >= HOTPATH_MIN_RATIO else "missed"


def hotpath_note(result: RunResult, verdict: str) -> str:
    hp = result.hotpath
    extra = hp.lua_cpu - hp.static_cpu
    ratios = [lua.wrk.rps / st.wrk.rps * 100 for st, lua in hp.rounds if st.wrk.rps]
    target = f"{HOTPATH_MIN_RATIO * 100:g} %"
    if verdict == "inconclusive" and len(ratios) < MIN_HOTPATH_ROUNDS:
        head = (
            f"- **Lua balancer vs static requests/s: no verdict from {len(ratios)} round(s)** (ratio "
            f"{hp.ratio * 100:.1f} %; other processes used a median {hp.others_cpu * 100:.0f} % of the CPUs); the "
            f"default run pairs {Settings(quick=False).hotpath_rounds} rounds."
        )
    elif verdict == "inconclusive":
        head = (
            f"- **Lua balancer vs static requests/s: inconclusive on this run.** The paired rounds range from "
            f"{min(ratios):.0f} % to {max(ratios):.0f} % (median {hp.ratio * 100:.1f} %), on both sides of {target}: "
            f"other processes used a median {hp.others_cpu * 100:.0f} % of the CPUs during these runs, and "
            "their load moved within seconds, faster than pairing can cancel. Re-run on a quiet machine for a "
            "verdict."
        )
    elif verdict == "missed":
        head = (
            f"- **Lua balancer at {hp.ratio * 100:.1f} % of static misses {target} by "
            f"{(HOTPATH_MIN_RATIO - hp.ratio) * 100:.1f} points** (per-round ratios {min(ratios):.0f} % to "
            f"{max(ratios):.0f} %; other processes used a median {hp.others_cpu * 100:.0f} % of the CPUs)."
        )
    else:
        head = (
            f"- **Lua balancer at {hp.ratio * 100:.1f} % of static: met** (per-round ratios {min(ratios):.0f} % to "
            f"{max(ratios):.0f} %; other processes used a median {hp.others_cpu * 100:.0f} % of the CPUs)."
        )
    return head + (
        f" The steadier figure is the work per request: nginx's workers spent {hp.lua_cpu:.1f} µs of CPU per "
        f"request through the Lua balancer against {hp.static_cpu:.1f} µs through the static block "
        f"({extra:+.1f} µs, {hp.cpu_ratio * 100:.0f} % as the median of per-round ratios): a balancer_by_lua call "
        "(the `$syncer_upstream` map, one shared-dict read, a weighted round-robin pick, `set_more_tries`) and a "
        "log_by_lua call per request. Where nginx's CPU is the bottleneck that share comes straight out of "
        "requests/s; here wrk and the backends take much of the same CPUs, and where nginx has idle CPU the "
        "difference is a few µs of latency, not throughput."
    )


def reload_note(reload_: ModeSummary) -> str:
    churn = [reload_.windows[k] for k in CHURN_SCENARIOS if k in reload_.windows]
    base = reload_.windows.get("baseline")
    failed = sum(w.failed_total for w in churn)
    wrk_failed_total = sum(int(w.wrk["failed"]) for w in churn)
    idle_closed = sum(w.prober_failed.get("closed_idle_keepalive", 0) for w in churn)
    worst_tp = min(churn, key=lambda w: w.throughput_vs_baseline or 1.0)
    peak = max(churn, key=lambda w: w.rss_peak_mib)
    q = reload_.quiescence
    return (
        f"- **reload mode (no target), what it measured:** propagation p50 {ms(reload_.propagation['all'].p50)} ms, "
        f"p99 {ms(reload_.propagation['all'].p99)} ms: write → reload signalled p50 {ms(reload_.to_apply.p50)} ms "
        f"(quiescence {q[0]:g} s, up to {q[1]:g} s while changes keep coming, then `nginx -t` and "
        f"`nginx -s reload`), reload signalled → traffic p50 {ms(reload_.after_apply.p50)} ms (the master "
        f"re-reads its configuration and starts new workers). A sync (write upstream.conf with two fsyncs, "
        f"`nginx -t`, `nginx -s reload`) took p50 {ms(reload_.sync_ms.p50)} ms and up to "
        f"{ms(reload_.sync_ms.max)} ms; the fsync probe saw stalls up to "
        f"{ms(reload_.fsync_ms.max)} ms, and changes arriving during a sync wait for it, then for the next "
        f"quiescence period. {sum(w.reloads for w in churn)} reloads for "
        f"{sum(len(w.changes) for w in churn)} changes. {failed} failed requests under churn, {wrk_failed_total} "
        f"of them wrk socket errors and {idle_closed} prober requests on kept-alive connections that an old "
        f"worker closed as they went out (nginx trac #1022); none of these happen without a reload. Throughput "
        f"fell to {(worst_tp.throughput_vs_baseline or 0) * 100:.0f} % of the baseline in "
        f"{worst_tp.title.lower()}. Old workers held by the long-lived connections piled up to "
        f"{peak.max_workers} workers ({peak.max_shutting_down} shutting down) and nginx RSS from "
        f"{ms(base.rss_start_mib if base else peak.rss_start_mib)} to {ms(peak.rss_peak_mib)} MiB in "
        f"{peak.title.lower()}."
    )


def targets(result: RunResult) -> tuple[list[str], list[str]]:
    """The targets table and, for each miss, how much and why."""
    api, reload_ = _mode(result, "api"), _mode(result, "reload")
    lines = ["| target | measured | verdict |", "|---|---|---|"]
    notes: list[str] = []
    if api is not None:
        p99 = api.propagation["all"].p99
        ok = p99 is not None and p99 <= API_PROPAGATION_P99_MS
        lines.append(
            f"| api: propagation p99 ≤ {API_PROPAGATION_P99_MS:g} ms (all {api.propagation['all'].n} changes) "
            f"| {ms(p99)} ms | {'met' if ok else '**missed**'} |"
        )
        notes.append(api_propagation_note(result, api, p99 or 0.0))
        failed = {k: api.windows[k].failed_total for k in CHURN_SCENARIOS if k in api.windows}
        total = sum(failed.values())
        lines.append(
            f"| api: zero failed requests under every churn scenario | {total} "
            f"({', '.join(f'{k} {v}' for k, v in failed.items())}) | {'met' if total == 0 else '**missed**'} |"
        )
        if total:
            parts = []
            for k in CHURN_SCENARIOS:
                w = api.windows.get(k)
                if w and w.failed_total:
                    parts.append(
                        f"{w.title.lower()}: wrk {wrk_failed(w)}, prober {kinds(w.prober_failed)}, "
                        f"long-lived {kinds(w.holders_failed)}"
                    )
            notes.append(f"- **api failed requests: {total}** — " + "; ".join(parts) + ".")
    hp = result.hotpath
    verdict = hotpath_verdict(hp)
    lines.append(
        f"| api: Lua balancer ≥ {HOTPATH_MIN_RATIO * 100:g} % of static requests/s | {hp.ratio * 100:.1f} % "
        f"(median of {len(hp.rounds)} paired rounds; worker CPU per request {hp.cpu_ratio * 100:.0f} % of static) "
        f"| {verdict if verdict == 'met' else f'**{verdict}**'} |"
    )
    notes.append(hotpath_note(result, verdict))
    if reload_ is not None:
        notes.append(reload_note(reload_))
        q = reload_.quiescence
        lines.append(
            f"| reload: no target (quiescence {q[0]:g} s / {q[1]:g} s) | propagation p99 "
            f"{ms(reload_.propagation['all'].p99)} ms; failed requests under churn "
            f"{sum(reload_.windows[k].failed_total for k in CHURN_SCENARIOS if k in reload_.windows)}; "
            f"up to {max(w.max_workers for w in reload_.windows.values())} workers | measured |"
        )
    return lines, notes


def run_section(result: RunResult) -> list[str]:
    m, s = result.machine, result.settings
    lines = [
        "## Run",
        "",
        f"- Command: `{result.command}` (from the repository root; `make bench` runs `python -m bench.run`, "
        f"`make bench-quick` adds `--quick`)",
        f"- Date: {result.date}; the run took {result.seconds:.0f} s",
        f"- Machine: {m.nproc} CPUs ({m.cpu_model}), {m.memory_gib:.1f} GiB memory, Linux {m.kernel}",
        f"- Versions: {m.nginx} (Lua module {'present' if m.lua_module else 'MISSING'}), Python {m.python}, {m.wrk}",
        f"- Machine load: load average {m.loadavg} before the run, {result.loadavg_end} after it; "
        f"{result.busy_before * 100:.0f} % of all CPUs were busy with other work in the half second before it "
        f"started. The machine is shared: absolute figures move with other users' load; compare the two modes "
        f"within one run.",
    ]
    if s.quick:
        lines.append(
            f"- **Quick run** (`--quick`): {s.changes} changes per mode instead of the default run's ≥ 200, "
            "short windows, fewer long-lived connections. Good for checking that everything works; the "
            "percentiles are rough."
        )
    q = s.reload_quiescence
    lines += [
        "",
        "| setting | value |",
        "|---|---|",
        f"| nginx under test | `syncer nginx-example` config (via `render_example`), "
        f"`worker_processes {s.worker_processes}`, `worker_connections 4096`, access logs off, "
        "plus a loopback `stub_status` server for sampling |",
        f"| churned service `web` | {s.instances} active instances; "
        "each registration is a fresh backend (own port and name) |",
        f"| load | `wrk -t{s.wrk_threads} -c{s.wrk_connections} --latency` (keep-alive), Host `web` |",
        f"| long-lived connections | {s.holders} keep-alive connections, each long-polling Host `slow` "
        f"(answered after {s.hold_seconds:g} s) again and again |",
        f"| prober | {s.prober_threads} threads, keep-alive, back-to-back `GET /` (separate process) |",
        f"| reload-mode agent | `--quiescence-min {q[0]:g} --quiescence-max {q[1]:g}` (shipped default 1 s / 5 s: "
        "this run asks reload mode to follow changes within a second, as api mode does) |",
        f"| api-mode agent | `--quiescence-min {s.api_quiescence[0]:g} --quiescence-max {s.api_quiescence[1]:g}` "
        "(the default) |",
        "| both agents | `[safety] max_drop_share = 1.0` in a `--config` TOML (see Caveats), "
        "metrics on 127.0.0.1:0, JSON logs |",
    ]
    for mode in result.modes:
        lines.append(f"| {mode.mode} agent command | `{mode.agent_command}` |")
    return lines


def hotpath_section(result: RunResult) -> list[str]:
    hp = result.hotpath
    lines = [
        "## Hot path: Lua balancer vs static upstream",
        "",
        f"No churn, no agent, no prober: wrk only, against two nginx with the same {hp.servers} servers — "
        "`static`: the reload-mode config with a hand-written `upstream web { server ...; keepalive 64; }`; "
        "`lua`: the api-mode config with the same servers PUT to its admin API (`keepalive 64`). "
        f"{len(hp.rounds)} round(s); in each, {hp.seconds:g} s against one and then {hp.seconds:g} s against the "
        "other (the order alternates). The verdict is the median of the per-round ratios, so that other "
        "processes' load drifting between rounds cancels out; the other rows are medians over rounds.",
        "",
        "| | static `upstream {}` | Lua balancer | Lua / static |",
        "|---|---|---|---|",
        f"| requests/s | {hp.static_rps:,.0f} | {hp.lua_rps:,.0f} | **{hp.ratio * 100:.1f} %** (median of rounds) |",
        f"| latency p50 ms | {hp.static_p50:.2f} | {hp.lua_p50:.2f} | |",
        f"| latency p99 ms | {hp.static_p99:.2f} | {hp.lua_p99:.2f} | |",
        f"| nginx workers' CPU per request, µs | {hp.static_cpu:.1f} | {hp.lua_cpu:.1f} | "
        f"{hp.cpu_ratio * 100:.0f} % (median of rounds) |",
        f"| failed requests | {sum(r.failed for r in hp.static)} | {sum(r.failed for r in hp.lua)} | |",
        "",
        "| round | static req/s | Lua req/s | Lua / static | static µs/request | Lua µs/request | "
        "other processes' CPU (static / Lua run) |",
        "|---|---|---|---|---|---|---|",
    ]
    for number, (st, lu) in enumerate(hp.rounds, 1):
        lines.append(
            f"| {number} | {st.wrk.rps:,.0f} | {lu.wrk.rps:,.0f} | {lu.wrk.rps / max(1.0, st.wrk.rps) * 100:.1f} % | "
            f"{st.cpu_us:.1f} | {lu.cpu_us:.1f} | {st.others_cpu * 100:.0f} % / {lu.others_cpu * 100:.0f} % |"
        )
    return [*lines, "", f"![hot path]({result.figures['hotpath']})"]


def scenario_sections(result: RunResult) -> list[str]:
    lines: list[str] = []
    first = result.modes[0]
    for key, window in first.windows.items():
        windows = [m.windows[key] for m in result.modes if key in m.windows]
        lines += [f"## Scenario: {window.title}", "", f"{window.what}; {window.seconds:.0f} s of load.", ""]
        lines += scenario_table(windows)
        lines += ["", f"![{window.title}]({result.figures[key]})", ""]
    return lines


def propagation_section(result: RunResult) -> list[str]:
    lines = [
        "## Propagation latency, all changes",
        "",
        "Every Consul write of every scenario. Primary figure: from the write to the first request the new "
        "instance receives (register) or the last request the removed one receives (deregister), read from "
        "the backends' request log (all traffic: wrk, prober; ~1 ms resolution). Cross-check: the same from "
        "the prober's own responses only (coarser: an instance gets about 1/N of the prober's requests).",
        "",
        "| mode | changes | register p50 / p95 / p99 ms | deregister p50 / p95 / p99 ms | all p50 / p95 / p99 ms | "
        "max ms | prober cross-check, all p50 / p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in result.modes:
        p, c = m.propagation, m.propagation_prober["all"]
        lines.append(
            f"| {m.mode} | {p['all'].n} | {spread_cell(p['register'])} | {spread_cell(p['deregister'])} | "
            f"{spread_cell(p['all'])} | {ms(p['all'].max)} | {ms(c.p50)} / {ms(c.p99)} |"
        )
    lines += [
        "",
        "Where the time goes: each change split at the apply that delivered it — api: the admin API's "
        "`PUT /upstreams/web` answered (nginx's `$msec` in the admin access log); reload: the agent's sync "
        "ended, i.e. `nginx -t` passed and `nginx -s reload` returned (its JSON log). Before that point: Consul "
        "answering the blocking query, the agent's watch and main loop, quiescence, the apply itself; after "
        "it: nginx (api: the next request of any worker; reload: the master re-reading its configuration and "
        "starting new workers).",
        "",
        "| mode | write → applied p50 / p95 / p99 ms | applied → traffic p50 / p95 / p99 ms | changes attributed |",
        "|---|---|---|---|",
    ]
    for m in result.modes:
        a, b = m.to_apply, m.after_apply
        lines.append(
            f"| {m.mode} | {ms(a.p50)} / {ms(a.p95)} / {ms(a.p99)} | {ms(b.p50)} / {ms(b.p95)} / {ms(b.p99)} | "
            f"{a.observed} of {a.n} |"
        )
    lines += ["", f"![propagation]({result.figures['propagation']})"]
    return lines


def cost_section(result: RunResult) -> list[str]:
    lines = [
        "## Syncer cost",
        "",
        "The agent process over its whole life in each mode (start, initial sync, every scenario): CPU from "
        "/proc/<pid>/stat (utime+stime; children = cutime+cstime, i.e. the `nginx -t` and `nginx -s reload` "
        "it ran), peak RSS = VmHWM.",
        "",
        "| mode | agent CPU s, own | children CPU s | peak RSS (VmHWM) MiB | start → nginx serving all instances s | "
        "sharp drops held | error log lines |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in result.modes:
        lines.append(
            f"| {m.mode} | {m.agent_cpu_s:.2f} | {m.agent_children_cpu_s:.2f} | {m.agent_peak_rss_mib:.1f} | "
            f"{m.initial_sync_seconds:.2f} | {m.held_drops} | {m.agent_errors} |"
        )
    return lines


def method_section(result: RunResult) -> list[str]:
    s = result.settings
    return [
        "## Method",
        "",
        "- One command starts everything on loopback: one nginx serving every backend (never reloaded), then per "
        "mode a fresh dev Consul, the nginx under test, the agent (`python -m syncer run`), the prober and the "
        "long-lived connections; the modes run one after the other with the same scenarios, the same churn "
        "script and the same load.",
        "- Churn: a driver thread performs each Consul write (`PUT /v1/agent/service/register` or "
        "`.../deregister/<id>`) at its scheduled time and logs `time.monotonic()` and `time.time()` just before it. "
        "Registrations always use a fresh instance, so every response names exactly one registration.",
        "- Propagation: per change, from the write to the new instance's first request, or to the removed "
        "instance's last request (nginx `$msec` in the backends' log, matched by port). A change the traffic "
        "never showed (an instance added and removed within one batched reload) is counted as never seen and "
        "left out of the percentiles.",
        "- Failed requests: wrk's non-2xx and socket errors (connect, read, write, timeout), the prober's "
        "failures (non-2xx, resets, EOF before an answer, timeouts) and the long-lived connections' failures. "
        "`closed_idle_keepalive` is a request sent on a kept-alive connection that the server closed at the same "
        "moment (an old worker shutting down); clients that retry such requests hide it, others fail.",
        f"- Throughput over time: the proxy's stub_status request counter, sampled every 0.1 s "
        f"(it counts every client); in the tables, wrk's requests/s over its {s.lead_seconds:g} s + churn + "
        f"{s.tail_seconds:g} s window and the ratio to the same mode's baseline window.",
        "- nginx processes: the master's children (`/proc/<pid>/task/*/children`) every 0.1 s: workers by title "
        "(`worker process` / `worker process is shutting down`) and the sum of VmRSS of master and children.",
        "- Between scenarios the run waits until no worker is shutting down (at most hold time + 3 s), so each "
        "scenario starts clean; the grey part of each figure is that wait.",
    ]


def caveats_section(result: RunResult) -> list[str]:
    m = result.machine
    return [
        "## Caveats",
        "",
        f"- Everything — wrk, nginx, the backends, the dev Consul, the agent, the prober — runs on the same "
        f"{m.nproc} CPUs. wrk keeps them saturated, so the agent and the dev Consul compete for CPU with the load; "
        "on a production host the load generator is elsewhere. Propagation figures include that scheduling delay.",
        "- The dev Consul is an in-process stand-in for a Consul agent (no Raft, no network between servers): "
        "real Consul adds its own commit and blocking-query latency to both modes alike.",
        "- RSS is summed over processes, so pages shared between master and workers (code, shared memory "
        "zones) count once per process — the same convention as the reports of worker pile-ups it is compared "
        "with (nginx/kubernetes-ingress #3907).",
        "- The sharp-drop guard (`[safety] max_drop_share`, default 0.5) is opened to 1.0 for both agents: "
        "the churn script never drops more than one instance per Consul answer, but an agent starved of CPU "
        "could see several deregistrations in one answer and hold them for 3 s; the tables count any held drop.",
        "- Noise: every scenario table ends with the share of the CPUs that processes other than the benchmark's "
        "used meanwhile (/proc/stat's busy time minus the CPU of the benchmark's own process tree); when it is "
        "high or differs between windows, throughput compared across windows (including \"vs this mode's "
        'baseline") says more about the neighbours than about the mode. The hot-path verdict pairs its runs '
        "for that reason. The fsync probe shows the same for the disk.",
        "- Backends are never stopped, only deregistered: a request routed to a removed instance still "
        "succeeds, so failures measure the proxy alone.",
        "- Another engineer may re-run this on a quiet machine: `make bench` rewrites this folder.",
    ]


def render(result: RunResult) -> str:
    lines = ["# syncer benchmark: reload vs api", ""]
    lines += [
        "Both strategies on one machine, one after the other, with the same churn script and the same load: "
        "how fast a Consul change reaches traffic, what it costs in failed requests and throughput, what it "
        "does to nginx's processes and memory, and what the agent itself costs. Generated by `bench/run.py`; "
        "`bench/README.md` explains how to read it.",
        "",
    ]
    lines += run_section(result)
    target_lines, notes = targets(result)
    lines += ["", "## Targets", "", *target_lines, ""]
    if notes:
        lines += [
            "Per target: by how much it is met or missed, and why; then what reload mode measured.",
            "",
            *notes,
            "",
        ]
    lines += [*hotpath_section(result), ""]
    lines += scenario_sections(result)
    lines += [*propagation_section(result), ""]
    lines += [*cost_section(result), ""]
    lines += routing_section(result.routing)
    if result.dns is not None:
        lines += [*dns_report.section(result.modes, result.dns), ""]
    lines += [*method_section(result), ""]
    lines += caveats_section(result)
    return "\n".join(lines) + "\n"


def to_json(result: RunResult) -> dict[str, Any]:
    def window(w: WindowSummary) -> dict[str, Any]:
        data = asdict(w)
        data.pop("series")
        data["failed_total"] = w.failed_total
        return data

    return {
        "command": result.command,
        "date": result.date,
        "seconds": result.seconds,
        "machine": result.machine.to_dict(),
        "busy_before": result.busy_before,
        "loadavg_end": result.loadavg_end,
        "settings": asdict(result.settings),
        "hotpath": {
            "static": [asdict(r) for r in result.hotpath.static],
            "lua": [asdict(r) for r in result.hotpath.lua],
            "ratio": result.hotpath.ratio,
        },
        "modes": [
            {
                **{k: v for k, v in asdict(m).items() if k != "windows"},
                "windows": {k: window(w) for k, w in m.windows.items()},
            }
            for m in result.modes
        ],
        "figures": result.figures,
        "routing": result.routing.to_dict() if result.routing else None,
        "dns": dns_report.to_json(result.dns) if result.dns is not None else None,
    }


def write(result: RunResult, out: Path) -> Path:
    path = out / "report.md"
    path.write_text(render(result))
    (out / "results.json").write_text(json.dumps(to_json(result), indent=1, default=str) + "\n")
    return path
