"""Blocking-query parameters: Go durations, Consul's wait default/cap and jitter.

Consul (agent/consul/rpc.go blockingQuery): a ``wait`` of zero or less becomes the
default (5m), anything above the maximum (10m) is capped, and up to ``wait/16`` of
random time is added so that many watchers do not wake in lockstep.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from syncer.devconsul.errors import HTTPError

DEFAULT_WAIT = 300.0
MAX_WAIT = 600.0
JITTER_FRACTION = 16

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,  # micro sign
    "\u03bcs": 1e-6,  # Greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d*\.?\d*)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse_go_duration(text: str) -> float:
    """Seconds for a Go ``time.ParseDuration`` string such as ``"1m30s"`` or ``"250ms"``.

    Raises ValueError with Go's wording for what Go rejects (missing unit, junk).
    """
    original = text
    sign = 1.0
    if text[:1] in ("+", "-"):
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text == "0":
        return 0.0
    if not text:
        raise ValueError(f'time: invalid duration "{original}"')
    total = 0.0
    pos = 0
    while pos < len(text):
        match = _PART.match(text, pos)
        if match is None or match.group(1) in ("", "."):
            if re.fullmatch(r"\d*\.?\d*", text[pos:]):
                raise ValueError(f'time: missing unit in duration "{original}"')
            raise ValueError(f'time: invalid duration "{original}"')
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    return sign * total


def effective_wait(requested: float | None, default: float = DEFAULT_WAIT, maximum: float = MAX_WAIT) -> float:
    """The wait Consul applies before jitter: default for unset/zero/negative, capped at ``maximum``."""
    if requested is None or requested <= 0:
        return default
    return min(requested, maximum)


def with_jitter(wait: float, rng: random.Random | None = None) -> float:
    """``wait`` plus lib.RandomStagger(wait/16): uniform in [0, wait/16)."""
    source = rng or random
    return wait + source.uniform(0.0, wait / JITTER_FRACTION)


@dataclass(frozen=True)
class QueryOptions:
    """The query-string options shared by Consul's read endpoints (``s.parse``)."""

    min_index: int = 0
    wait: float | None = None
    stale: bool = False
    consistent: bool = False
    cached: bool = False
    filter: str = ""
    pretty: bool = False

    @property
    def blocking(self) -> bool:
        return self.min_index > 0

    @property
    def consistency(self) -> str:
        if self.consistent:
            return "consistent"
        if self.stale:
            return "stale"
        return "leader"


def first(query: dict[str, list[str]], name: str) -> str:
    """``url.Values.Get``: the first value or the empty string."""
    values = query.get(name)
    return values[0] if values else ""


def parse_query_options(query: dict[str, list[str]]) -> QueryOptions:
    """Parse like Consul's ``s.parse``: consistency first, then wait and index."""
    stale = "stale" in query
    consistent = "consistent" in query
    cached = "cached" in query
    max_stale = first(query, "max_stale")
    if max_stale:
        try:
            if parse_go_duration(max_stale) > 0:
                stale = True
        except ValueError:
            raise HTTPError(400, f'Invalid max_stale value "{max_stale}"') from None
    if stale and consistent:
        raise HTTPError(400, "Cannot specify ?stale with ?consistent, conflicting semantics.")
    if cached and consistent:
        raise HTTPError(400, "Cannot specify ?cached with ?consistent, conflicting semantics.")
    wait: float | None = None
    raw_wait = first(query, "wait")
    if raw_wait:
        try:
            wait = parse_go_duration(raw_wait)
        except ValueError:
            raise HTTPError(400, "Invalid wait time") from None
    min_index = 0
    raw_index = first(query, "index")
    if raw_index:
        if not raw_index.isdigit() or int(raw_index) >= 2**64:
            raise HTTPError(400, "Invalid index")
        min_index = int(raw_index)
    return QueryOptions(
        min_index=min_index,
        wait=wait,
        stale=stale,
        consistent=consistent,
        cached=cached,
        filter=first(query, "filter"),
        pretty="pretty" in query,
    )
