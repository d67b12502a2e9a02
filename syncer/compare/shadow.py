"""Online shadowing: join the access log (the original answer) and the mirror log (the
candidate's answer to the mirrored copy) by ``$request_id``, and compare per route the
status distribution and the latency distribution.

nginx discards a mirror's response body, so only status and latency can be compared
here; replay (``syncer compare --primary … --candidate …``) compares bodies.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from syncer.compare.logformat import LogEntry
from syncer.compare.routes import route_of


@dataclass(frozen=True)
class Latency:
    count: int
    p50: float
    p90: float
    p99: float
    max: float


def percentile(sorted_values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile of an ascending sequence (``share`` in 0..1)."""
    rank = max(1, math.ceil(share * len(sorted_values)))
    return sorted_values[rank - 1]


def latency(values: Iterable[float | None]) -> Latency | None:
    known = sorted(v for v in values if v is not None)
    if not known:
        return None
    return Latency(len(known), percentile(known, 0.5), percentile(known, 0.9), percentile(known, 0.99), known[-1])


@dataclass(frozen=True)
class ShadowRoute:
    route: str
    requests: int
    original_status: dict[str, int]
    mirror_status: dict[str, int]
    status_mismatch: int
    mismatch_rate: float
    mirror_timeouts: int
    original_latency: Latency | None
    mirror_latency: Latency | None
    slower: bool  # p90 beyond --max-latency-ratio
    differs: bool


@dataclass(frozen=True)
class ShadowSummary:
    originals: int
    mirrors: int
    joined: int
    unmatched_mirrors: int
    routes: tuple[ShadowRoute, ...]


def _status(value: int | None) -> str:
    return str(value) if value is not None else "-"


MIN_LATENCY = 0.001  # nginx logs milliseconds: a 0.000 s original must not make every ratio infinite


def too_slow(original: Latency | None, mirror: Latency | None, ratio: float | None) -> bool:
    """The candidate's p90 above ``ratio`` times the original's (None: latency not judged)."""
    if ratio is None or original is None or mirror is None:
        return False
    return mirror.p90 > ratio * max(original.p90, MIN_LATENCY)


def compare_logs(
    originals: Iterable[LogEntry], mirrors: Iterable[LogEntry], max_diff: float, max_latency_ratio: float | None = None
) -> ShadowSummary:
    """Pairs by request id; a route differs when more than ``max_diff`` percent of its
    mirrored requests got another status from the candidate (a mirror timeout, 504,
    counts: the candidate did not answer in time), or, given ``max_latency_ratio``, when
    the candidate's p90 latency is more than that many times the original's."""
    by_id: dict[str, LogEntry] = {}
    original_count = 0
    for entry in originals:
        if entry.kind == "replay":
            original_count += 1
            by_id[entry.id] = entry
    pairs: dict[str, list[tuple[LogEntry, LogEntry]]] = collections.defaultdict(list)
    mirror_count = unmatched = 0
    for mirror in mirrors:
        if mirror.kind != "mirror":
            continue
        mirror_count += 1
        original = by_id.get(mirror.id)
        if original is None:
            unmatched += 1
            continue
        pairs[route_of(original.method, original.uri)].append((original, mirror))
    routes: list[ShadowRoute] = []
    for route, joined in sorted(pairs.items()):
        mismatch = sum(o.status != m.status for o, m in joined)
        rate = mismatch / len(joined) * 100
        original_latency = latency(o.upstream_time for o, _ in joined)
        mirror_latency = latency(m.upstream_time for _, m in joined)
        slower = too_slow(original_latency, mirror_latency, max_latency_ratio)
        routes.append(
            ShadowRoute(
                route=route,
                requests=len(joined),
                original_status=dict(sorted(collections.Counter(_status(o.status) for o, _ in joined).items())),
                mirror_status=dict(sorted(collections.Counter(_status(m.status) for _, m in joined).items())),
                status_mismatch=mismatch,
                mismatch_rate=rate,
                mirror_timeouts=sum(m.status == 504 for _, m in joined),
                original_latency=original_latency,
                mirror_latency=mirror_latency,
                slower=slower,
                differs=rate > max_diff or slower,
            )
        )
    return ShadowSummary(original_count, mirror_count, sum(len(p) for p in pairs.values()), unmatched, tuple(routes))
