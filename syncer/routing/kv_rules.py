"""The gray rules of every entry, assembled from validated KV values, and the address
lists flattened into sorted, non-overlapping ranges (pure; both modes consume them).

Flattening decides overlaps once, here: lists are taken in precedence order (``priority``
then name) and an address belongs to the first list that names it. nginx's ``geo`` (longest
prefix wins) and the Lua binary search then see ranges that never overlap, so they cannot
disagree about a client.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from syncer.routing.kv import AddressList, HostMap, Override, Target
from syncer.routing.kv_net import cidrs, parse_address, text


@dataclass(frozen=True)
class EntryRules:
    entry: str
    override: Override | None = None
    lists: tuple[AddressList, ...] = ()  # precedence order
    hosts: HostMap | None = None

    def targets(self) -> set[Target]:
        found: set[Target] = {lst.target for lst in self.lists}
        if self.override is not None:
            found.add(self.override.target)
            if self.override.primary is not None:
                found.add(self.override.primary)
        if self.hosts is not None:
            found.update(t for _, t in self.hosts.exact + self.hosts.wildcard)
            if self.hosts.default is not None:
                found.add(self.hosts.default)
        return found


@dataclass(frozen=True)
class GrayRules:
    entries: tuple[EntryRules, ...] = ()  # sorted by entry name

    def get(self, entry: str) -> EntryRules | None:
        return next((e for e in self.entries if e.entry == entry), None)

    def targets(self) -> frozenset[Target]:
        return frozenset(t for e in self.entries for t in e.targets())

    def referenced_services(self) -> set[str]:
        """Every service a gray rule sends traffic to: the agent must watch these too."""
        return {t.service for t in self.targets()}


def assemble(
    overrides: Mapping[str, Override], lists: Mapping[tuple[str, str], AddressList], hosts: Mapping[str, HostMap]
) -> GrayRules:
    names = sorted(set(overrides) | {entry for entry, _ in lists} | set(hosts))
    entries = []
    for entry in names:
        ordered = sorted((lst for (e, _), lst in lists.items() if e == entry), key=lambda lst: (lst.priority, lst.name))
        entries.append(EntryRules(entry, overrides.get(entry), tuple(ordered), hosts.get(entry)))
    return GrayRules(tuple(entries))


class Range(NamedTuple):
    """Addresses ``first``..``last`` (inclusive, as integers) of one family go to ``target``."""

    version: int  # 4 or 6
    first: int
    last: int
    target: Target

    def text(self) -> tuple[str, str]:
        return text(self.version, self.first), text(self.version, self.last)

    def cidrs(self) -> list[str]:
        return cidrs(self.version, self.first, self.last)


Interval = tuple[int, int]


def _merge(intervals: Iterable[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for first, last in sorted(intervals):
        if out and first <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], last))
        else:
            out.append((first, last))
    return out


def _subtract(wanted: list[Interval], taken: list[Interval]) -> list[Interval]:
    """Parts of ``wanted`` not in ``taken`` (both sorted and disjoint): one linear pass."""
    out: list[Interval] = []
    j = 0
    for first, last in wanted:
        start = first
        while j < len(taken) and taken[j][1] < start:
            j += 1
        k = j
        while k < len(taken) and taken[k][0] <= last and start <= last:
            if taken[k][0] > start:
                out.append((start, taken[k][0] - 1))
            start = max(start, taken[k][1] + 1)
            k += 1
        if start <= last:
            out.append((start, last))
    return out


_CACHE: dict[tuple[int, int], tuple[tuple[AddressList, ...], tuple[Range, ...]]] = {}
_CACHE_SIZE = 32


def address_ranges(lists: Iterable[AddressList], version: int) -> tuple[Range, ...]:
    """The lists of one entry as sorted, disjoint ranges of one IP version.

    Planning runs on every health change too; the same (unchanged) lists are flattened
    once: the result is kept per identity of the lists tuple (kept alive by the cache).
    """
    lists = tuple(lists)
    key = (id(lists), version)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is lists:
        return hit[1]
    result = _flatten(lists, version)
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = (lists, result)
    return result


def _flatten(lists: tuple[AddressList, ...], version: int) -> tuple[Range, ...]:
    claimed: list[Interval] = []
    pieces: list[Range] = []
    for lst in lists:
        mine = _merge((n.first, n.last) for n in lst.networks if n.version == version)
        pieces.extend(Range(version, a, b, lst.target) for a, b in _subtract(mine, claimed))
        claimed = _merge(claimed + mine)
    pieces.sort(key=lambda r: r.first)
    joined: list[Range] = []
    for piece in pieces:  # neighbours with the same target become one range
        if joined and joined[-1].target == piece.target and joined[-1].last + 1 == piece.first:
            joined[-1] = Range(version, joined[-1].first, piece.last, piece.target)
        else:
            joined.append(piece)
    return tuple(joined)


def lookup(ranges: tuple[Range, ...], address: str) -> Target | None:
    """Reference lookup (tests, previews): what a client address gets from these ranges."""
    parsed = parse_address(address)
    if parsed is None:
        return None
    version, value = parsed
    for r in ranges:
        if r.version == version and r.first <= value <= r.last:
            return r.target
    return None
