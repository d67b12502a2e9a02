"""Chain compilation, table-driven: entries + healthy instances -> pools and legs."""

from __future__ import annotations

from typing import Any

import pytest

from syncer.model import Server
from syncer.planning.desired import desired_state
from syncer.routing.compile import RoutingConfig, compile_routing, referenced_services
from syncer.routing.entries import parse_entry
from syncer.routing.table import Leg


def srv(
    port: int, version: str = "1", *, tags: tuple[str, ...] = (), zone: str = "a", status: str = "passing"
) -> Server:
    return Server("127.0.0.1", port, instance_id=f"i{port}", tags=tags, meta=(("version", version),),
                  node_meta=(("zone", zone),), status=status)  # fmt: skip


HTTP = {"Kind": "service-defaults", "Name": "web", "Protocol": "http"}
RESOLVER = {
    "Kind": "service-resolver", "Name": "web", "DefaultSubset": "v1",
    "Subsets": {"v1": {"Filter": "Service.Meta.version == 1"}, "v2": {"Filter": "Service.Meta.version == 2"},
                "canary": {"Filter": "canary in Service.Tags"}, "b": {"Filter": "Node.Meta.zone == b"},
                "strict": {"Filter": "Service.Meta.version == 1", "OnlyPassing": True}},
}  # fmt: skip


def split(*legs: tuple[float, str], meta: dict[str, str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"Kind": "service-splitter", "Name": "web",
                            "Splits": [{"Weight": w, "ServiceSubset": s} for w, s in legs]}  # fmt: skip
    if meta:
        body["Meta"] = meta
    return body


def config(*raw: dict[str, Any]) -> RoutingConfig:
    return RoutingConfig.of(parse_entry(r) for r in raw)


WEB = (srv(1, "1"), srv(2, "1", zone="b"), srv(3, "2", tags=("canary",)), srv(4, "1", status="warning"))

CASES: list[tuple[str, tuple[dict[str, Any], ...], dict[str, tuple[Server, ...]], tuple[Leg, ...]]] = [
    ("no entries: the service itself", (), {"web": WEB}, (Leg("web", 10000),)),
    ("resolver default subset", (RESOLVER,), {"web": WEB}, (Leg("web.v1", 10000),)),
    ("90/10 split", (HTTP, RESOLVER, split((90, "v1"), (10, "v2"))), {"web": WEB},
     (Leg("web.v1", 9000), Leg("web.v2", 1000))),
    ("0.01 granularity", (HTTP, RESOLVER, split((99.99, "v1"), (0.01, "v2"))), {"web": WEB},
     (Leg("web.v1", 9999), Leg("web.v2", 1))),
    ("empty leg gives its weight away", (HTTP, RESOLVER, split((50, "v1"), (50, "v2"))),
     {"web": WEB[:2]}, (Leg("web.v1", 10000),)),
    ("splitter ignored without http protocol", (RESOLVER, split((50, "v1"), (50, "v2"))), {"web": WEB},
     (Leg("web.v1", 10000),)),
    ("failover by subset", (HTTP, {**RESOLVER, "DefaultSubset": "v2", "Failover": {"v2": {"ServiceSubset": "v1"}}}),
     {"web": WEB[:2]}, (Leg("web.v1", 10000),)),
    ("failover '*' to another service",
     (HTTP, {**RESOLVER, "DefaultSubset": "v2", "Failover": {"*": {"Service": "legacy"}}}),
     {"web": WEB[:2], "legacy": (srv(9),)}, (Leg("legacy", 10000),)),
    ("redirect", (HTTP, {"Kind": "service-resolver", "Name": "web", "Redirect": {"Service": "legacy"}}),
     {"web": WEB, "legacy": (srv(9),)}, (Leg("legacy", 10000),)),
]  # fmt: skip


@pytest.mark.parametrize(("why", "raw", "services", "legs"), CASES, ids=[c[0] for c in CASES])
def test_default_action(
    why: str, raw: tuple[dict[str, Any], ...], services: dict[str, tuple[Server, ...]], legs: tuple[Leg, ...]
) -> None:
    compiled = compile_routing(config(*raw), services, ["web"])
    assert compiled.tables["web"].default.legs == legs, why


def test_subset_members_follow_the_filter() -> None:
    compiled = compile_routing(config(HTTP, RESOLVER, {
        "Kind": "service-router", "Name": "web", "Routes": [
            {"Match": {"HTTP": {"PathPrefix": "/c"}}, "Destination": {"ServiceSubset": "canary"}},
            {"Match": {"HTTP": {"PathPrefix": "/b"}}, "Destination": {"ServiceSubset": "b"}},
            {"Match": {"HTTP": {"PathPrefix": "/s"}}, "Destination": {"ServiceSubset": "strict"}},
        ]}), {"web": WEB}, ["web"])  # fmt: skip
    ports = {name: {s.port for s in up.servers} for name, up in compiled.pools.items()}
    assert ports == {"web.canary": {3}, "web.b": {2}, "web.strict": {1, 2}, "web.v1": {1, 2, 4}}


def test_nested_splitters_flatten() -> None:
    raw = (
        HTTP, {**HTTP, "Name": "api"},
        {"Kind": "service-splitter", "Name": "web", "Splits": [{"Weight": 50, "Service": "api"}, {"Weight": 50}]},
        {"Kind": "service-splitter", "Name": "api", "Splits": [
            {"Weight": 80, "Service": "api"}, {"Weight": 20, "Service": "api2"}]},
    )  # fmt: skip
    compiled = compile_routing(config(*raw), {"web": WEB, "api": (srv(7),), "api2": (srv(8),)}, ["web"])
    assert compiled.tables["web"].default.legs == (Leg("api", 4000), Leg("api2", 1000), Leg("web", 5000))


def test_bad_chain_keeps_the_last_good_table() -> None:
    good = config(HTTP, RESOLVER, split((90, "v1"), (10, "v2")))
    first = desired_state({"web": WEB}, good)
    bad = config(HTTP, RESOLVER, {"Kind": "service-router", "Name": "web", "Routes": [
        {"Match": {"HTTP": {"PathPrefix": "/x"}}, "Destination": {"ServiceSubset": "nope"}}]})  # fmt: skip
    second = desired_state({"web": WEB}, bad, previous=first)
    assert second.routing["web"] == first.routing["web"]
    assert {"web.v1", "web.v2"} <= set(second.upstreams)
    assert compile_routing(bad, {"web": WEB}).errors["web"] == "service-resolver 'web' has no subset 'nope'"


def test_pool_name_clash_with_a_service_is_refused() -> None:
    compiled = compile_routing(config(RESOLVER), {"web": WEB, "web.v1": (srv(5),)}, ["web"])
    assert "has the name of a service" in compiled.errors["web"]


def test_referenced_services() -> None:
    raw = (HTTP, {**RESOLVER, "Failover": {"*": {"Service": "legacy"}}},
           {"Kind": "service-router", "Name": "web", "Routes": [{"Destination": {"Service": "api"}}]})  # fmt: skip
    assert referenced_services(config(*raw)) == {"web", "legacy", "api"}


def test_a_zero_percent_leg_keeps_its_pool() -> None:
    compiled = compile_routing(config(HTTP, RESOLVER, split((100, "v1"), (0, "v2"))), {"web": WEB}, ["web"])
    assert compiled.tables["web"].default.legs == (Leg("web.v1", 10000),)
    assert "web.v2" in compiled.pools
