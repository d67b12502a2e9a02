"""Counting differences per route and field, and telling real ones from noise (Diffy).

For every request, ``raw`` differences are the fields where the candidate's answer differs
from the primary's; ``noise`` differences are the fields where the secondary (the same old
code as the primary) differs from the primary. A field is a *real* difference on a route,
as in opendiffy/diffy's ``DifferencesFilterFactory``, when it differs more often against
the candidate than against the secondary, and by enough:

* relative = |raw - noise| / (raw + noise) * 100  >  ``relative`` (default 20)
* absolute = |raw - noise| / requests * 100       >  ``absolute`` (default 0.03)

Without a secondary every difference counts as real. A route's *real difference rate* is
the share of its requests in which at least one real field differed.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field

from syncer.compare.fields import Flat, differing, example_value
from syncer.compare.logformat import LogEntry

MAX_DIFF_SETS = 10_000  # distinct per-request difference sets kept per route
MAX_FIELDS = 2_000  # distinct field names counted per route (JSON keyed by ids could grow without end)
OTHER_FIELDS = "(other fields)"


@dataclass(frozen=True)
class Thresholds:
    relative: float = 20.0
    absolute: float = 0.03


def relative_difference(raw: int, noise: int) -> float:
    return abs(raw - noise) / (raw + noise) * 100 if raw + noise else 0.0


def absolute_difference(raw: int, noise: int, requests: int) -> float:
    return abs(raw - noise) / requests * 100 if requests else 0.0


def is_real(raw: int, noise: int, requests: int, thresholds: Thresholds) -> bool:
    return (
        raw > noise
        and relative_difference(raw, noise) > thresholds.relative
        and absolute_difference(raw, noise, requests) > thresholds.absolute
    )


@dataclass(frozen=True)
class Example:
    request_id: str
    uri: str
    field: str
    primary: str
    candidate: str
    secondary: str | None


@dataclass
class RouteStats:
    requests: int = 0
    raw_requests: int = 0
    noise_requests: int = 0
    raw_fields: collections.Counter[str] = field(default_factory=collections.Counter)
    noise_fields: collections.Counter[str] = field(default_factory=collections.Counter)
    diff_sets: collections.Counter[frozenset[str]] = field(default_factory=collections.Counter)
    overflow: int = 0  # requests whose difference set was not kept (MAX_DIFF_SETS reached)
    examples: dict[str, list[Example]] = field(default_factory=dict)


@dataclass(frozen=True)
class FieldVerdict:
    name: str
    raw: int
    noise: int
    relative: float
    absolute: float
    real: bool


@dataclass(frozen=True)
class RouteVerdict:
    route: str
    requests: int
    raw_rate: float  # percent of requests with any candidate difference
    noise_rate: float  # percent of requests with any secondary difference
    real_rate: float  # percent of requests with a real difference
    fields: tuple[FieldVerdict, ...]
    examples: tuple[Example, ...]
    differs: bool  # real_rate beyond the allowed maximum


class Tally:
    """Thread-safe per-route counters; workers ``add`` and the report reads ``verdicts``."""

    def __init__(self, examples_per_field: int = 3) -> None:
        self._lock = threading.Lock()
        self._routes: dict[str, RouteStats] = {}
        self._examples_per_field = examples_per_field
        self.replayed = 0

    def add(self, route: str, entry: LogEntry, primary: Flat, candidate: Flat, secondary: Flat | None) -> bool:
        """Count one replayed request; True when the candidate differed at all."""
        raw = differing(primary, candidate)
        noise = differing(primary, secondary) if secondary is not None else set()
        with self._lock:
            self.replayed += 1
            stats = self._routes.setdefault(route, RouteStats())
            raw, noise = self._bounded(stats, raw), self._bounded(stats, noise)
            stats.requests += 1
            stats.raw_requests += bool(raw)
            stats.noise_requests += bool(noise)
            stats.raw_fields.update(raw)
            stats.noise_fields.update(noise)
            key = frozenset(raw)
            if key in stats.diff_sets or len(stats.diff_sets) < MAX_DIFF_SETS:
                stats.diff_sets[key] += 1
            else:
                stats.overflow += 1
            for name in sorted(raw):
                kept = stats.examples.setdefault(name, [])
                if len(kept) < self._examples_per_field:
                    kept.append(
                        Example(
                            entry.id,
                            entry.uri,
                            name,
                            example_value(primary, name),
                            example_value(candidate, name),
                            example_value(secondary, name) if secondary is not None else None,
                        )
                    )
        return bool(raw)

    @staticmethod
    def _bounded(stats: RouteStats, names: set[str]) -> set[str]:
        """``names``, with fields beyond the per-route cap counted as one."""
        known = stats.raw_fields.keys() | stats.noise_fields.keys()
        room = MAX_FIELDS - len(known)
        out: set[str] = set()
        for name in sorted(names):
            if name in known or room > 0:
                room -= name not in known
                out.add(name)
            else:
                out.add(OTHER_FIELDS)
        return out

    def verdicts(self, thresholds: Thresholds, max_diff: float) -> list[RouteVerdict]:
        with self._lock:
            return [self._verdict(r, s, thresholds, max_diff) for r, s in sorted(self._routes.items())]

    @staticmethod
    def _verdict(route: str, stats: RouteStats, thresholds: Thresholds, max_diff: float) -> RouteVerdict:
        n = stats.requests
        fields: list[FieldVerdict] = []
        for name in sorted(stats.raw_fields.keys() | stats.noise_fields.keys()):
            raw, noise = stats.raw_fields[name], stats.noise_fields[name]
            fields.append(
                FieldVerdict(
                    name,
                    raw,
                    noise,
                    relative_difference(raw, noise),
                    absolute_difference(raw, noise, n),
                    is_real(raw, noise, n, thresholds),
                )
            )
        real = {f.name for f in fields if f.real}
        real_requests = sum(count for diff, count in stats.diff_sets.items() if diff & real)
        # requests past the kept sets are counted as differing when any real field exists
        real_requests += stats.overflow if real else 0
        real_rate = real_requests / n * 100 if n else 0.0
        examples = tuple(e for name in sorted(real) for e in stats.examples.get(name, ()))
        return RouteVerdict(
            route=route,
            requests=n,
            raw_rate=stats.raw_requests / n * 100 if n else 0.0,
            noise_rate=stats.noise_requests / n * 100 if n else 0.0,
            real_rate=real_rate,
            fields=tuple(fields),
            examples=examples,
            differs=bool(real) and real_rate > max_diff,
        )
