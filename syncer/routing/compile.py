"""Discovery-chain compilation: entries + healthy instances -> pools + one table per entry.

Pure. Follows Consul's chain (docs/connect/l7-traffic/discovery-chain.mdx): router
(ordered routes, unmatched traffic to the service itself) -> splitter (flattened when a
leg names another service that has its own splitter) -> resolver (DefaultSubset,
Redirect, Failover). Two choices Consul leaves to the proxy, made the way users ask:

* a target whose pool has no healthy instance goes to its resolver's Failover (by
  subset, else ``"*"``) when that one has instances;
* a split leg that is still empty gives its weight to the other legs (pro rata, the
  remainder to the first, as Consul rounds), so an empty canary never takes traffic.
  When every leg is empty the legs stay: nginx answers 502 as for any empty upstream.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from syncer.model import Server, Upstream, make_upstream
from syncer.routing.entries import (
    DEFAULTS,
    HTTP_PROTOCOLS,
    NGINX_RETRY_ON,
    RESOLVER,
    ROUTER,
    SPLITTER,
    Destination,
    Entry,
    Resolver,
    Router,
    ServiceDefaults,
    Splitter,
    Target,
)
from syncer.routing.kv_chain import attach_gray
from syncer.routing.kv_rules import GrayRules
from syncer.routing.names import pool_name
from syncer.routing.subsets import members
from syncer.routing.table import Action, CompiledRoute, Leg, Policy, RouteTable

UNITS = 10000
MAX_DEPTH = 8


class ChainError(ValueError):
    """An entry's chain cannot be compiled (unknown subset, redirect loop, name clash)."""


@dataclass(frozen=True)
class RoutingConfig:
    """Every parsed entry, by kind and name (what the config-entry Sources delivered)."""

    defaults: Mapping[str, ServiceDefaults] = field(default_factory=dict)
    resolvers: Mapping[str, Resolver] = field(default_factory=dict)
    splitters: Mapping[str, Splitter] = field(default_factory=dict)
    routers: Mapping[str, Router] = field(default_factory=dict)
    gray: GrayRules = field(default_factory=GrayRules)  # KV stages 1-4 (issue 11)

    @classmethod
    def of(cls, entries: Iterable[Entry]) -> RoutingConfig:
        by_kind: dict[str, dict[str, Entry]] = {DEFAULTS: {}, RESOLVER: {}, SPLITTER: {}, ROUTER: {}}
        for entry in entries:
            by_kind[entry.kind][entry.name] = entry
        return cls(
            {n: e for n, e in by_kind[DEFAULTS].items() if isinstance(e, ServiceDefaults)},
            {n: e for n, e in by_kind[RESOLVER].items() if isinstance(e, Resolver)},
            {n: e for n, e in by_kind[SPLITTER].items() if isinstance(e, Splitter)},
            {n: e for n, e in by_kind[ROUTER].items() if isinstance(e, Router)},
        )

    def l7(self, service: str) -> bool:
        """Routers and splitters apply only to services whose protocol permits them."""
        defaults = self.defaults.get(service)
        return defaults is not None and defaults.protocol in HTTP_PROTOCOLS

    def entry_services(self) -> set[str]:
        return set(self.routers) | set(self.splitters) | set(self.resolvers) | {e.entry for e in self.gray.entries}


@dataclass(frozen=True)
class Compiled:
    pools: Mapping[str, Upstream]
    tables: Mapping[str, RouteTable]
    errors: Mapping[str, str]  # entry service -> why its table could not be built
    notes: tuple[str, ...] = ()  # routers/splitters not applied, and why


def referenced_services(config: RoutingConfig) -> set[str]:
    """Every service a route, split, redirect or failover points at: the agent must watch them."""
    found = set(config.entry_services())
    for router in config.routers.values():
        found.update(r.destination.service for r in router.routes if r.destination.service)
    for splitter in config.splitters.values():
        found.update(s.service for s in splitter.splits if s.service)
    for resolver in config.resolvers.values():
        if resolver.redirect is not None and resolver.redirect.service:
            found.add(resolver.redirect.service)
        found.update(t.service for t in resolver.failover.values() if t.service)
    found.update(config.gray.referenced_services())
    return found


class _Chain:
    def __init__(self, config: RoutingConfig, services: Mapping[str, tuple[Server, ...]]) -> None:
        self.config = config
        self.services = services
        self.pools: dict[str, Upstream] = {}
        self.standby: set[str] = set()  # pools of 0 % split legs

    # resolver hop ------------------------------------------------------------------------
    def resolve(self, service: str, subset: str, depth: int = 0) -> tuple[str, str]:
        if depth > MAX_DEPTH:
            raise ChainError(f"redirect chain from {service!r} longer than {MAX_DEPTH} (a loop?)")
        resolver = self.config.resolvers.get(service)
        if resolver is None:
            if subset:
                raise ChainError(f"service {service!r} has no service-resolver defining subset {subset!r}")
            return service, ""
        if resolver.redirect is not None:
            target = resolver.redirect
            return self.resolve(target.service or service, target.subset, depth + 1)
        subset = subset or resolver.default_subset
        if subset and subset not in resolver.subsets:
            raise ChainError(f"service-resolver {service!r} has no subset {subset!r}")
        return service, subset

    def pool(self, service: str, subset: str) -> Upstream:
        name = pool_name(service, subset)
        if subset and name in self.services:
            raise ChainError(f"pool {name!r} (service {service!r}, subset {subset!r}) has the name of a service")
        if name not in self.pools:
            servers = self.services.get(service, ())
            if subset:
                resolver = self.config.resolvers[service]
                servers = members(service, servers, resolver.subsets[subset])
            self.pools[name] = make_upstream(name, servers)
        return self.pools[name]

    def target(self, service: str, subset: str) -> str:
        """The pool for a (service, subset) destination, failing over when it is empty."""
        service, subset = self.resolve(service, subset)
        primary = self.pool(service, subset)
        if not primary.empty:
            return primary.name
        resolver = self.config.resolvers.get(service)
        failover: Target | None = None
        if resolver is not None:
            failover = resolver.failover.get(subset) or resolver.failover.get("*")
        if failover is not None:
            alt_service, alt_subset = self.resolve(failover.service or service, failover.subset)
            alternative = self.pool(alt_service, alt_subset)
            if not alternative.empty:
                return alternative.name
        return primary.name

    # splitter hop ------------------------------------------------------------------------
    def split(self, service: str, depth: int = 0) -> list[tuple[str, str, int]]:
        """(service, subset, units) legs of ``service``'s splitter, flattened."""
        splitter = self.config.splitters.get(service) if self.config.l7(service) else None
        if splitter is None:
            return [(service, "", UNITS)]
        if depth > MAX_DEPTH:
            raise ChainError(f"splitters nested deeper than {MAX_DEPTH} from {service!r}")
        legs: list[tuple[str, str, int]] = []
        for s in splitter.splits:
            leg_service = s.service or service
            if leg_service != service and not s.subset and leg_service in self.config.splitters:
                legs.extend((svc, sub, s.units * u // UNITS) for svc, sub, u in self.split(leg_service, depth + 1))
            else:
                legs.append((leg_service, s.subset, s.units))
        return legs

    def action(self, entry: str, destination: Destination | None) -> Action:
        service = (destination.service if destination else "") or entry
        subset = destination.subset if destination else ""
        if subset:
            legs = [Leg(self.target(service, subset), UNITS)]
            sticky = None
        else:
            splitter = self.config.splitters.get(service) if self.config.l7(service) else None
            sticky = splitter.sticky if splitter else None
            split = self.split(service)
            # a 0 % leg takes no traffic but keeps its pool: a canary set to 0 stays ready
            self.standby.update(self.target(svc, sub) for svc, sub, units in split if units == 0)
            legs = _healthy_legs(
                [Leg(self.target(svc, sub), units) for svc, sub, units in split if units > 0],
                {name for name, up in self.pools.items() if up.empty},
            )
            if len(legs) == 1:
                sticky = None
        if destination is None:
            return Action(tuple(legs), sticky)
        return Action(
            tuple(legs),
            sticky,
            destination.prefix_rewrite,
            destination.request_headers,
            destination.response_headers,
        )


def _healthy_legs(legs: list[Leg], empty: set[str]) -> list[Leg]:
    """Merge legs on the same pool; drop empty pools and share their weight pro rata."""
    merged: dict[str, int] = {}
    for leg in legs:
        merged[leg.pool] = merged.get(leg.pool, 0) + leg.units
    live = {pool: units for pool, units in merged.items() if pool not in empty and units > 0}
    if not live:
        live = {pool: units for pool, units in merged.items() if units > 0}
    total = sum(live.values())
    shares = {pool: units * UNITS // total for pool, units in live.items()}
    first = next(iter(shares))
    shares[first] += UNITS - sum(shares.values())  # Consul gives the rounding remainder to the first split
    return [Leg(pool, units) for pool, units in shares.items()]


def _policy(router: Router | None) -> Policy:
    if router is None:
        return Policy()
    tries, timeout = 0, 0.0
    conditions: set[str] = set()
    for route in router.routes:
        d = route.destination
        if d.num_retries or d.retry_on_connect_failure or d.retry_on or d.retry_on_status_codes:
            tries = max(tries, d.num_retries + 1)
        if d.retry_on_connect_failure:
            conditions.update(("error", "timeout"))
        for cond in d.retry_on:
            conditions.update(NGINX_RETRY_ON[cond])
        conditions.update(f"http_{code}" for code in d.retry_on_status_codes)
        timeout = max(timeout, d.request_timeout)
    order = ["error", "timeout", *sorted(c for c in conditions if c.startswith("http_"))]
    return Policy(tries, tuple(c for c in order if c in conditions), timeout)


def compile_routing(
    config: RoutingConfig,
    services: Mapping[str, tuple[Server, ...]],
    entries: Iterable[str] | None = None,
) -> Compiled:
    """Pools and tables for ``entries`` (default: every watched service and every service
    with a router, splitter or resolver). An entry whose chain fails gets no table here;
    the caller keeps its last good one (``errors`` says why)."""
    names = sorted(set(entries) if entries is not None else set(services) | config.entry_services())
    tables: dict[str, RouteTable] = {}
    errors: dict[str, str] = {}
    pools: dict[str, Upstream] = {}
    notes = [
        f"{kind} {name!r} not applied: service-defaults Protocol of {name!r} is not http"
        for kind, entries_of_kind in ((ROUTER, config.routers), (SPLITTER, config.splitters))
        for name in sorted(entries_of_kind)
        if not config.l7(name)
    ]
    for entry in names:
        chain = _Chain(config, services)
        router = config.routers.get(entry) if config.l7(entry) else None
        try:
            routes = tuple(
                CompiledRoute(route.match, chain.action(entry, route.destination))
                for route in (router.routes if router else ())
            )
            table = RouteTable(entry, routes, chain.action(entry, None), _policy(router))
            table = attach_gray(table, config.gray.get(entry), chain.target)
        except ChainError as exc:
            errors[entry] = str(exc)
            continue
        tables[entry] = table
        used = table.pools() | chain.standby
        pools.update({name: up for name, up in chain.pools.items() if name in used})
    return Compiled(pools, tables, errors, tuple(notes))
