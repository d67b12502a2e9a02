"""The reports: Markdown for people, JSON for machines, one summary line for logs/CI."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from syncer.compare.noise import Example, RouteVerdict, Thresholds
from syncer.compare.shadow import Latency, ShadowRoute, ShadowSummary

FIELDS_SHOWN = 25


@dataclass(frozen=True)
class ReplayReport:
    primary: str
    candidate: str
    secondary: str | None
    thresholds: Thresholds
    max_diff: float
    read: int
    rejected: int
    rejected_examples: tuple[str, ...]
    skipped: dict[str, int]
    selected: int
    replayed: int
    interrupted: bool
    failures: tuple[str, ...]
    routes: tuple[RouteVerdict, ...]
    differing_routes: tuple[str, ...] = field(default=())

    @property
    def differs(self) -> bool:
        return bool(self.differing_routes)


def build_replay_report(**kwargs: Any) -> ReplayReport:
    routes: Sequence[RouteVerdict] = kwargs["routes"]
    return ReplayReport(**kwargs, differing_routes=tuple(r.route for r in routes if r.differs))


def to_json(report: ReplayReport | ShadowSummary, extra: dict[str, Any] | None = None) -> str:
    data: dict[str, Any] = {"kind": "replay" if isinstance(report, ReplayReport) else "shadow"}
    data.update(dataclasses.asdict(report))
    if isinstance(report, ReplayReport):
        data["differs"] = report.differs
    data.update(extra or {})
    return json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"


def _cell(text: object) -> str:
    """A value made safe for a Markdown table cell and inline code."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("`", "'").replace("\n", " ")


def _pct(value: float) -> str:
    return f"{value:.1f}%"


def replay_markdown(report: ReplayReport) -> str:
    lines = ["# syncer compare: candidate against primary", ""]
    targets = f"primary `{_cell(report.primary)}` · candidate `{_cell(report.candidate)}`"
    if report.secondary:
        targets += f" · secondary `{_cell(report.secondary)}` (noise estimate)"
    else:
        targets += " · no secondary: every difference counts as real"
    lines += [targets, ""]
    if report.interrupted:
        lines += [
            f"**Interrupted: partial report**, {report.replayed} of {report.selected} selected requests replayed.",
            "",
        ]
    lines.append(
        f"{report.read} log entries read, {report.rejected} rejected, {sum(report.skipped.values())} skipped, "
        f"{report.replayed} replayed. Thresholds: relative > {report.thresholds.relative:g}%, "
        f"absolute > {report.thresholds.absolute:g}%, --max-diff {report.max_diff:g}%."
    )
    lines.append("")
    verdict = (
        f"**{len(report.differing_routes)} of {len(report.routes)} routes differ**"
        if report.differs
        else f"No route differs beyond the thresholds ({len(report.routes)} routes)."
    )
    lines += [verdict, ""]
    lines += [
        "| route | requests | raw diff | noise | real diff | verdict |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in report.routes:
        mark = "**DIFFERS**" if r.differs else ("noise only" if r.raw_rate and not r.real_rate else "same")
        if r.real_rate and not r.differs:
            mark = "within --max-diff"
        lines.append(
            f"| `{_cell(r.route)}` | {r.requests} | {_pct(r.raw_rate)} | {_pct(r.noise_rate)} | "
            f"{_pct(r.real_rate)} | {mark} |"
        )
    lines.append("")
    for r in report.routes:
        if not any(f.raw or f.noise for f in r.fields):
            continue
        lines += [f"## `{_cell(r.route)}`", ""]
        lines += [
            "| field | candidate differs | secondary differs | relative | absolute | real |",
            "|---|---:|---:|---:|---:|---|",
        ]
        shown = sorted(r.fields, key=lambda f: (not f.real, -f.raw, f.name))[:FIELDS_SHOWN]
        for f in shown:
            lines.append(
                f"| `{_cell(f.name)}` | {f.raw} | {f.noise} | {_pct(f.relative)} | {_pct(f.absolute)} | "
                f"{'**yes**' if f.real else 'noise' if f.noise else 'no'} |"
            )
        if len(r.fields) > FIELDS_SHOWN:
            lines.append(f"| … {len(r.fields) - FIELDS_SHOWN} more fields in the JSON report | | | | | |")
        lines.append("")
        if r.examples:
            lines += ["Examples of real differences (all of them in the JSON report):", ""]
            for e in _first_examples(r.examples):
                secondary = f", secondary `{_cell(e.secondary)}`" if e.secondary is not None else ""
                lines.append(
                    f"- `{_cell(e.uri)}` (id `{_cell(e.request_id)}`) `{_cell(e.field)}`: "
                    f"primary `{_cell(e.primary)}`, candidate `{_cell(e.candidate)}`{secondary}"
                )
            lines.append("")
    if report.skipped:
        lines += ["## Skipped", ""]
        lines += [f"- {count} x {_cell(reason)}" for reason, count in sorted(report.skipped.items())]
        lines.append("")
    if report.rejected_examples:
        lines += ["## Rejected log lines", ""]
        lines += [f"- {_cell(text)}" for text in report.rejected_examples]
        lines.append("")
    if report.failures:
        lines += ["## Internal failures", ""]
        lines += [f"- {_cell(text)}" for text in report.failures[:20]]
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def _first_examples(examples: Sequence[Example], per_field: int = 2, total: int = 8) -> list[Example]:
    shown: list[Example] = []
    per: dict[str, int] = {}
    for example in sorted(examples, key=lambda e: e.field != "status"):  # a status change first
        if per.get(example.field, 0) < per_field and len(shown) < total:
            per[example.field] = per.get(example.field, 0) + 1
            shown.append(example)
    return shown


def replay_summary(report: ReplayReport) -> str:
    head = "compare (interrupted, partial)" if report.interrupted else "compare"
    text = f"{head}: {report.replayed} requests replayed over {len(report.routes)} routes; "
    if not report.differs:
        return text + "no route differs beyond noise and --max-diff"
    worst = ", ".join(f"{r.route} ({_pct(r.real_rate)})" for r in report.routes if r.differs)
    return text + f"{len(report.differing_routes)} differ: {worst}"


def _latency(value: Latency | None) -> str:
    if value is None:
        return "-"
    return f"{value.p50 * 1000:.0f} / {value.p90 * 1000:.0f} / {value.p99 * 1000:.0f} ms"


def _statuses(counts: dict[str, int]) -> str:
    return ", ".join(f"{status} ({count})" for status, count in counts.items())


def shadow_markdown(summary: ShadowSummary, max_diff: float, max_latency_ratio: float | None = None) -> str:
    lines = [
        "# syncer compare: shadow traffic (nginx mirror)",
        "",
        f"{summary.originals} original requests, {summary.mirrors} mirrored, {summary.joined} joined by request id, "
        f"{summary.unmatched_mirrors} mirror entries without an original. nginx discards the mirror's response "
        "body: only status and latency are compared.",
        "",
        "| route | mirrored | original status | candidate status | mismatch | timeouts | "
        "original p50/p90/p99 | candidate p50/p90/p99 | verdict |",
        "|---|---:|---|---|---:|---:|---:|---:|---|",
    ]
    for r in summary.routes:
        lines.append(
            f"| `{_cell(r.route)}` | {r.requests} | {_statuses(r.original_status)} | {_statuses(r.mirror_status)} | "
            f"{_pct(r.mismatch_rate)} | {r.mirror_timeouts} | {_latency(r.original_latency)} | "
            f"{_latency(r.mirror_latency)} | {_shadow_verdict(r)} |"
        )
    rule = f"A route differs when more than {max_diff:g}% of its mirrored requests got another status"
    if max_latency_ratio is not None:
        rule += f", or when the candidate's p90 latency is above {max_latency_ratio:g} times the original's"
    lines += ["", rule + ".", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _shadow_verdict(route: ShadowRoute) -> str:
    if not route.differs:
        return "same"
    return "**DIFFERS** (slower)" if route.slower and route.status_mismatch == 0 else "**DIFFERS**"


def shadow_summary(summary: ShadowSummary) -> str:
    bad = [r for r in summary.routes if r.differs]
    text = f"compare (shadow): {summary.joined} mirrored requests over {len(summary.routes)} routes; "
    if not bad:
        return text + "statuses agree"
    return text + f"{len(bad)} differ: " + ", ".join(f"{r.route} ({_pct(r.mismatch_rate)})" for r in bad)
