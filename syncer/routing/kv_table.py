"""One entry's gray stages (1-4) with every target resolved to a pool: what both sinks carry out.

``gray_table`` takes the validated KV rules and a resolver (target -> pool name). Planning
passes the Consul chain's resolution (resolver default subset, redirect, failover), so a KV
target lands on the same pool a route to it would; without one a target's pool is
``pool_name(service, subset)``. Address ranges are flattened (``kv_rules.address_ranges``)
and neighbours that resolved to one pool merge.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from syncer.routing.kv import Target
from syncer.routing.kv_rules import EntryRules, address_ranges

PoolOf = Callable[[Target], str]


@dataclass(frozen=True, order=True)
class PoolRange:
    version: int
    first: int
    last: int
    pool: str

    def text(self) -> tuple[str, str]:
        make = ipaddress.IPv4Address if self.version == 4 else ipaddress.IPv6Address
        return str(make(self.first)), str(make(self.last))

    def cidrs(self) -> list[str]:
        first, last = self.text()
        make = ipaddress.IPv4Address if self.version == 4 else ipaddress.IPv6Address
        return [str(n) for n in ipaddress.summarize_address_range(make(first), make(last))]


@dataclass(frozen=True)
class GrayTable:
    entry: str
    header_var: str | None = None  # nginx variable of the override header, e.g. http_x_canary
    cookie_var: str | None = None
    canary: str | None = None  # pool for "always"
    primary: str | None = None  # pool for "never"; None: the KV stages stop, Consul decides
    ranges: tuple[PoolRange, ...] = ()  # IPv4 then IPv6, each sorted and disjoint
    exact: tuple[tuple[str, str], ...] = ()  # host -> pool
    wildcard: tuple[tuple[str, str], ...] = ()  # ".example.com" -> pool
    host_default: str | None = None
    has_hosts: bool = False

    def pools(self) -> set[str]:
        found = {p for p in (self.canary, self.primary, self.host_default) if p}
        found.update(r.pool for r in self.ranges)
        found.update(p for _, p in self.exact + self.wildcard)
        return found

    def ranges_of(self, version: int) -> tuple[PoolRange, ...]:
        return tuple(r for r in self.ranges if r.version == version)


def default_pool(target: Target) -> str:
    return target.pool


def gray_table(rules: EntryRules, pool_of: PoolOf = default_pool) -> GrayTable:
    ranges: list[PoolRange] = []
    for version in (4, 6):
        for r in address_ranges(rules.lists, version):
            pool = pool_of(r.target)
            if ranges and ranges[-1].version == version and ranges[-1].pool == pool and ranges[-1].last + 1 == r.first:
                ranges[-1] = PoolRange(version, ranges[-1].first, r.last, pool)
            else:
                ranges.append(PoolRange(version, r.first, r.last, pool))
    override = rules.override
    hosts = rules.hosts
    return GrayTable(
        entry=rules.entry,
        header_var=override.header_var if override else None,
        cookie_var=override.cookie_var if override else None,
        canary=pool_of(override.target) if override else None,
        primary=pool_of(override.primary) if override and override.primary else None,
        ranges=tuple(ranges),
        exact=tuple((name, pool_of(t)) for name, t in hosts.exact) if hosts else (),
        wildcard=tuple((suffix, pool_of(t)) for suffix, t in hosts.wildcard) if hosts else (),
        host_default=pool_of(hosts.default) if hosts and hosts.default else None,
        has_hosts=hosts is not None,
    )
