"""Address lists flattened into sorted, disjoint ranges: precedence decides overlaps."""

from __future__ import annotations

import ipaddress
import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncer.routing.kv import AddressList, Target
from syncer.routing.kv_net import cidrs, parse_network
from syncer.routing.kv_rules import EntryRules, address_ranges, lookup
from syncer.routing.kv_table import gray_table

PRE, OFFICE, OTHER = Target("web", "pre"), Target("web", "office"), Target("web", "other")


def lst(name: str, target: Target, *cidrs: str, priority: int = 100) -> AddressList:
    return AddressList(name, target, priority, tuple(parse_network(c) for c in cidrs))


def test_first_list_wins_an_overlap_and_the_rest_is_kept() -> None:
    """10.0.0.0/8 of a later list keeps only what the earlier /16 did not claim."""
    ranges = address_ranges([lst("a", PRE, "10.1.0.0/16"), lst("b", OFFICE, "10.0.0.0/8")], 4)
    assert [(r.text(), r.target) for r in ranges] == [
        (("10.0.0.0", "10.0.255.255"), OFFICE),
        (("10.1.0.0", "10.1.255.255"), PRE),
        (("10.2.0.0", "10.255.255.255"), OFFICE),
    ]
    assert lookup(ranges, "10.1.2.3") == PRE
    assert lookup(ranges, "10.9.2.3") == OFFICE
    assert lookup(ranges, "::ffff:10.1.2.3") == PRE  # IPv4-mapped counts as IPv4
    assert lookup(ranges, "11.0.0.0") is None


def test_neighbours_of_one_target_merge_and_families_split() -> None:
    lists = [lst("a", PRE, "192.168.1.0/25", "192.168.1.128/25", "2001:db8::/64", "2001:db8:0:1::/64")]
    assert [r.text() for r in address_ranges(lists, 4)] == [("192.168.1.0", "192.168.1.255")]
    assert [r.text() for r in address_ranges(lists, 6)] == [("2001:db8::", "2001:db8:0:1:ffff:ffff:ffff:ffff")]


def _brute(lists: list[AddressList], address: str) -> Target | None:
    ip = ipaddress.ip_address(address)
    for one in lists:
        if any(n.first <= int(ip) <= n.last for n in one.networks if n.version == ip.version):
            return one.target
    return None


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_flattened_ranges_agree_with_a_linear_scan(seed: int) -> None:
    """For random lists over a small space, ranges + lookup == first list that contains the address."""
    rng = random.Random(seed)
    lists = []
    for i, target in enumerate([PRE, OFFICE, OTHER]):
        cidrs = {f"10.0.{rng.randrange(4)}.{rng.randrange(0, 256, 8)}/{rng.choice([29, 30, 32])}" for _ in range(6)}
        cidrs |= {f"10.0.{rng.randrange(4)}.0/{rng.choice([24, 26])}" for _ in range(rng.randrange(2))}
        lists.append(lst(f"l{i}", target, *(str(ipaddress.ip_network(c, strict=False)) for c in cidrs)))
    ranges = address_ranges(lists, 4)
    assert all(a.last < b.first for a, b in itertools.pairwise(ranges))
    for value in range(int(ipaddress.ip_address("10.0.0.0")), int(ipaddress.ip_address("10.0.4.0")), 3):
        address = str(ipaddress.ip_address(value))
        assert lookup(ranges, address) == _brute(lists, address), address


def test_gray_table_resolves_targets_and_merges_neighbours_of_one_pool() -> None:
    """Two lists whose targets resolve to one pool (a redirect, say) become one range."""
    rules = EntryRules("web", lists=(lst("a", PRE, "10.0.0.0/25"), lst("b", OFFICE, "10.0.0.128/25", "::1")))
    plain = gray_table(rules)
    assert [(r.text(), r.pool) for r in plain.ranges] == [
        (("10.0.0.0", "10.0.0.127"), "web.pre"),
        (("10.0.0.128", "10.0.0.255"), "web.office"),
        (("::1", "::1"), "web.office"),
    ]
    same = gray_table(rules, lambda t: "web.v2")
    assert [(r.text(), r.pool) for r in same.ranges] == [
        (("10.0.0.0", "10.0.0.255"), "web.v2"),
        (("::1", "::1"), "web.v2"),
    ]
    assert same.pools() == {"web.v2"}


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**16))
def test_cidrs_cover_a_range_exactly_and_agree_with_ipaddress(first: int, span: int) -> None:
    last = min(first + span, 2**32 - 1)
    expected = ipaddress.summarize_address_range(ipaddress.IPv4Address(first), ipaddress.IPv4Address(last))
    assert cidrs(4, first, last) == [str(n) for n in expected]


@pytest.mark.parametrize(
    ("value", "reason"),
    [("10.0.0.1/33", "prefix length"), ("10.0.0.1/8", "host bits"), ("::ffff:1.2.3.4", "IPv4-mapped"),
     ("1.2.3", "not an IPv4"), ("fe80::1%eth0", "zone"), ("10.0.0.0/", "prefix length"), ("::/-1", "prefix")],
)  # fmt: skip
def test_parse_network_refusals(value: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_network(value)
