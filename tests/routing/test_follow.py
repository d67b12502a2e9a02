"""The agent's side of routing: per-entry last good versions, once-only logs, counters."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from syncer.model import Server
from syncer.routing.entries import Entry
from syncer.routing.events import ConfigEntriesChanged
from syncer.routing.follow import RoutingFollower
from syncer.routing.sources import read_entries

ROUTER = "service-router"


def router(path_regex: str, **extra: Any) -> dict[str, Any]:
    return {"Kind": ROUTER, "Name": "web", "Routes": [
        {"Match": {"HTTP": {"PathRegex": path_regex}}, "Destination": {"Service": "api", **extra}}]}  # fmt: skip


def test_a_refused_entry_keeps_its_last_good_version_and_others_apply() -> None:
    good: dict[str, Entry] = {}
    seen: dict[str, tuple[str, ...]] = {}
    entries, refused, _ = read_entries(ROUTER, [router("/a")], good, seen)
    assert [e.name for e in entries] == ["web"]
    other = {**router("/b"), "Name": "shop"}
    entries, refused, _ = read_entries(ROUTER, [router("(x+)+"), other], good, seen)
    assert [e.name for e in entries] == ["shop", "web"]
    assert entries[1] == good["web"]  # the /a version
    assert len(refused) == 1
    assert refused[0].startswith('service-router "web": Routes[0].Match.HTTP.PathRegex')
    assert refused[0].endswith("(last good version kept)")
    entries, refused, _ = read_entries(ROUTER, [other], good, seen)  # deleted in Consul
    assert [e.name for e in entries] == ["shop"]
    assert refused == ()


def test_ignored_fields_are_reported_once_per_version() -> None:
    good: dict[str, Entry] = {}
    seen: dict[str, tuple[str, ...]] = {}
    raw = router("/a", IdleTimeout="5s")
    _, _, ignored = read_entries(ROUTER, [raw], good, seen)
    assert ignored == ('service-router "web": ignored Routes[0].Destination.IdleTimeout',)
    assert read_entries(ROUTER, [raw], good, seen)[2] == ()


def test_follower_counts_and_plans() -> None:
    registry = CollectorRegistry()
    follower = RoutingFollower(registry)
    good: dict[str, Entry] = {}
    entries, refused, ignored = read_entries(ROUTER, [router("/a", IdleTimeout="1s"), router("(?=x)")], good, {})
    watched = follower.handle(ConfigEntriesChanged(ROUTER, entries, refused, ignored, 1, 0.0))
    assert watched == {"web", "api"}
    follower.handle(ConfigEntriesChanged(ROUTER, entries, refused, (), 2, 0.0))  # the same refusal again
    assert registry.get_sample_value("syncer_routing_refusals_total", {"kind": ROUTER}) == 1
    assert registry.get_sample_value("syncer_routing_fields_ignored_total", {"kind": ROUTER}) == 1
    desired = follower.plan({"web": (Server("127.0.0.1", 1),), "api": (Server("127.0.0.1", 2),)})
    # web has no service-defaults: the router is not applied (Consul treats it as tcp)
    assert desired.routing["web"].routes == ()
    assert follower.previous is desired
