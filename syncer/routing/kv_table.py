"""One entry's gray stages (1-4) with every target resolved to a pool: what both sinks carry out.

``gray_table`` takes the validated KV rules and a resolver (target -> pool name). Planning
passes the Consul chain's resolution (resolver default subset, redirect, failover), so a KV
target lands on the same pool a route to it would; without one a target's pool is
``pool_name(service, subset)``. Address ranges are flattened (``kv_rules.address_ranges``)
and neighbours that resolved to one pool merge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from syncer.routing.kv import Target
from syncer.routing.kv_net import cidrs, text
from syncer.routing.kv_rules import EntryRules, address_ranges

PoolOf = Callable[[Target], str]


class PoolRange(NamedTuple):
    version: int
    first: int
    last: int
    pool: str

    def text(self) -> tuple[str, str]:
        return text(self.version, self.first), text(self.version, self.last)

    def cidrs(self) -> list[str]:
        return cidrs(self.version, self.first, self.last)


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
    pools: dict[Target, str] = {}

    def resolve(target: Target) -> str:
        if target not in pools:  # a handful of targets, thousands of ranges
            pools[target] = pool_of(target)
        return pools[target]

    override = rules.override
    hosts = rules.hosts
    return GrayTable(
        entry=rules.entry,
        header_var=override.header_var if override else None,
        cookie_var=override.cookie_var if override else None,
        canary=resolve(override.target) if override else None,
        primary=resolve(override.primary) if override and override.primary else None,
        ranges=_pool_ranges(rules, resolve),
        exact=tuple((name, resolve(t)) for name, t in hosts.exact) if hosts else (),
        wildcard=tuple((suffix, resolve(t)) for suffix, t in hosts.wildcard) if hosts else (),
        host_default=resolve(hosts.default) if hosts and hosts.default else None,
        has_hosts=hosts is not None,
    )


def _pool_ranges(rules: EntryRules, resolve: Callable[[Target], str]) -> tuple[PoolRange, ...]:
    # every range's target is one of its list's Target objects: map them by identity
    # (hashing a dataclass per range would cost more than the rest of this loop)
    pool_by_id = {id(lst.target): resolve(lst.target) for lst in rules.lists}
    ranges: list[PoolRange] = []
    for version in (4, 6):
        for r in address_ranges(rules.lists, version):
            pool = pool_by_id[id(r.target)]
            last = ranges[-1] if ranges else None
            if last is not None and last.version == version and last.pool == pool and last.last + 1 == r.first:
                ranges[-1] = PoolRange(version, last.first, r.last, pool)
            else:
                ranges.append(PoolRange(version, r.first, r.last, pool))
    return tuple(ranges)
