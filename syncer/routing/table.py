"""The compiled routing of one entry service: what both sinks carry out per request.

Everything here is already resolved against the healthy instances: a leg names a pool
(an nginx upstream), never a service or subset, so nginx and the Lua router only match
and pick. Weights are whole 1/10000 units, the resolution of nginx's split_clients.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from syncer.routing.entries import HeaderMods, HTTPMatch, Sticky
from syncer.routing.kv_table import GrayTable


@dataclass(frozen=True)
class Leg:
    pool: str
    units: int  # share of the traffic in 1/10000; the legs of an action sum to 10000


@dataclass(frozen=True)
class Action:
    legs: tuple[Leg, ...]
    sticky: Sticky | None = None  # None: per-request random pick, as Envoy does
    prefix_rewrite: str = ""  # replaces the matched PathPrefix / PathExact
    request_headers: HeaderMods = field(default_factory=HeaderMods)
    response_headers: HeaderMods = field(default_factory=HeaderMods)

    @property
    def single(self) -> str | None:
        return self.legs[0].pool if len(self.legs) == 1 else None


@dataclass(frozen=True)
class CompiledRoute:
    match: HTTPMatch
    action: Action


@dataclass(frozen=True)
class Policy:
    """Retries and timeout for the whole entry (nginx's proxy_next_upstream* and
    proxy_read_timeout are per location, not per request): the union of the routes'."""

    tries: int = 0  # 0: the location's own proxy_next_upstream_tries
    next_upstream: tuple[str, ...] = ()  # proxy_next_upstream conditions
    read_timeout: float = 0.0  # seconds; 0: the location's own


@dataclass(frozen=True)
class RouteTable:
    entry: str
    routes: tuple[CompiledRoute, ...]
    default: Action
    policy: Policy = Policy()
    gray: GrayTable | None = None  # KV stages 1-4, ahead of the routes (issue 11, docs/kv-layout.md)

    def pools(self) -> set[str]:
        pools = {leg.pool for action in (self.default, *(r.action for r in self.routes)) for leg in action.legs}
        return pools | (self.gray.pools() if self.gray else set())
