"""From the latest healthy set per service (and the routing entries) to the ``Desired`` state."""

from __future__ import annotations

from collections.abc import Mapping

from syncer.model import Desired, Server, Upstream, make_upstream
from syncer.routing.compile import Compiled, RoutingConfig, compile_routing
from syncer.routing.table import RouteTable

# The Store keeps the same servers tuple for a service until it changes, so the same
# Upstream object can be reused: sorting 2,000 services on every change is wasted work, and
# an unchanged object lets the api sink skip re-diffing it. A memo, not state: the result
# is the same with or without it.
_MEMO: dict[str, tuple[tuple[Server, ...], Upstream]] = {}


def _upstream(name: str, servers: tuple[Server, ...]) -> Upstream:
    hit = _MEMO.get(name)
    if hit is not None and hit[0] is servers:
        return hit[1]
    upstream = make_upstream(name, servers)
    _MEMO[name] = (servers, upstream)
    return upstream


def desired_state(
    services: Mapping[str, tuple[Server, ...]],
    routing: RoutingConfig | None = None,
    previous: Desired | None = None,
) -> Desired:
    return plan(services, routing, previous)[0]


def plan(
    services: Mapping[str, tuple[Server, ...]],
    routing: RoutingConfig | None = None,
    previous: Desired | None = None,
) -> tuple[Desired, Compiled | None]:
    """The desired state, and the routing compilation report (errors and notes to log once).

    An entry whose chain cannot be compiled keeps its last good table (from ``previous``)
    and the pools that table uses; every other entry is unaffected.
    """
    upstreams: dict[str, Upstream] = {name: _upstream(name, servers) for name, servers in services.items()}
    if routing is None:
        return Desired(upstreams), None
    compiled = compile_routing(routing, services)
    tables: dict[str, RouteTable] = dict(compiled.tables)
    pools: dict[str, Upstream] = dict(compiled.pools)
    if previous is not None:
        for entry in compiled.errors:
            old = previous.routing.get(entry)
            if old is None:
                continue
            tables[entry] = old
            for name in old.pools():
                if name not in pools and name in previous.upstreams:
                    pools[name] = previous.upstreams[name]
    for name, pool in pools.items():
        upstreams.setdefault(name, pool)
    return Desired(upstreams, tables, frozenset(pools)), compiled
