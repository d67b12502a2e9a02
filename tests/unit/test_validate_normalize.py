"""Normalization of Consul health answers and the nginx-safety rules behind it."""

from __future__ import annotations

from typing import Any

import pytest

from syncer import validate
from syncer.discovery.normalize import AnswerInvalid, Rules, catalog_service_names, health_entries
from syncer.model import Server


def entry(
    address: str | None = "10.0.0.1",
    port: object = 8080,
    node_address: str = "192.168.0.9",
    checks: list[str] | None = None,
    service: str = "web",
    instance: str = "web-1",
    **extra: Any,
) -> dict[str, Any]:
    svc: dict[str, Any] = {"ID": instance, "Service": service, "Address": address, "Port": port, "Tags": []}
    svc.update(extra)
    return {
        "Node": {"Node": "n1", "Address": node_address},
        "Service": svc,
        "Checks": [{"CheckID": f"c{i}", "Status": s} for i, s in enumerate(checks or ["passing", "passing"])],
    }


def test_passing_instance_becomes_a_server() -> None:
    """A healthy instance becomes a server with its address, port and Passing weight."""
    result = health_entries("web", [entry(Weights={"Passing": 5, "Warning": 1})], Rules())
    assert result.servers == (Server("10.0.0.1", 8080, weight=5),)
    assert result.rejections == ()


def test_empty_service_address_falls_back_to_node_address() -> None:
    """Service.Address empty → Node.Address, as consul-template does."""
    result = health_entries("web", [entry(address="")], Rules())
    assert result.servers[0].address == "192.168.0.9"


def test_missing_weights_default_to_one() -> None:
    result = health_entries("web", [entry()], Rules())
    assert result.servers[0].weight == 1


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({"nginx_max_fails": "3"}, {"max_fails": 3}),
        ({"nginx_fail_timeout": "30s"}, {"fail_timeout": 30}),
        ({"nginx_fail_timeout": "2m"}, {"fail_timeout": 120}),
        ({"nginx_max_conns": "100"}, {"max_conns": 100}),
        ({"nginx_backup": "true"}, {"backup": True}),
        ({"nginx_down": "true"}, {"down": True}),
        ({"version": "1.2.3"}, {}),
    ],
)
def test_meta_keys_set_nginx_server_parameters(meta: dict[str, str], expected: dict[str, object]) -> None:
    """Documented Service.Meta keys carry nginx's server parameters."""
    server = health_entries("web", [entry(Meta=meta)], Rules()).servers[0]
    for key, value in expected.items():
        assert getattr(server, key) == value


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"address": "10.0.0.1;}"}, "address"),
        ({"address": "10.0.0.1 backup"}, "address"),
        ({"address": "evil\nserver 6.6.6.6:80"}, "address"),
        ({"address": "$host"}, "address"),
        ({"address": "", "node_address": ""}, "address"),
        ({"port": 0}, "port"),
        ({"port": 65536}, "port"),
        ({"port": "80"}, "port"),
        ({"port": True}, "port"),
        ({"Tags": ["ok", 7]}, "Service.Tags[]"),
        ({"Tags": "not-a-list"}, "Service.Tags"),
        ({"Meta": {"owner": None}}, "Service.Meta.owner"),
        ({"Meta": ["x"]}, "Service.Meta"),
        ({"Meta": {"nginx_max_fails": "lots"}}, "Service.Meta.nginx_max_fails"),
        ({"Meta": {"nginx_fail_timeout": "10s;"}}, "Service.Meta.nginx_fail_timeout"),
        ({"Weights": {"Passing": 0, "Warning": 1}}, "Service.Weights.Passing"),
        ({"Weights": {"Passing": 70000, "Warning": 1}}, "Service.Weights.Passing"),
        ({"instance": 42}, "Service.ID"),
    ],
)
def test_dangerous_or_invalid_values_reject_only_that_instance(overrides: dict[str, Any], field: str) -> None:
    """Injection attempts and invalid values reject the instance, naming field and value; others stay."""
    bad = entry(**overrides)
    good = entry(address="10.0.0.2", instance="web-2")
    result = health_entries("web", [bad, good], Rules())
    assert [s.address for s in result.servers] == ["10.0.0.2"]
    assert len(result.rejections) == 1
    rejection = result.rejections[0]
    assert rejection.field == field
    assert rejection.reason
    assert rejection.service == "web"


@pytest.mark.parametrize(
    "overrides",
    [
        {"Tags": ["ok", "bad;tag"]},
        {"Tags": ["{"]},
        {"Meta": {"owner": "a b"}},
        {"Meta": {"x": "#comment"}},
        {"instance": "id'quote"},
    ],
)
def test_tags_meta_and_ids_that_nginx_never_sees_ride_along(overrides: dict[str, Any]) -> None:
    """Values that are nginx syntax but never reach nginx do not cost the instance."""
    result = health_entries("web", [entry(**overrides)], Rules())
    assert result.rejections == ()
    assert len(result.servers) == 1


def test_ipv6_addresses_are_bracketed_in_endpoints() -> None:
    server = health_entries("web", [entry(address="2001:db8::1")], Rules()).servers[0]
    assert server.address == "2001:db8::1"
    assert server.endpoint == "[2001:db8::1]:8080"


def test_hostnames_only_where_nginx_resolves_them() -> None:
    """Reload mode accepts DNS names; the api endpoint needs IPs."""
    assert health_entries("web", [entry(address="app.internal")], Rules()).servers[0].address == "app.internal"
    result = health_entries("web", [entry(address="app.internal")], Rules(allow_hostnames=False))
    assert result.servers == ()
    assert "IP address" in result.rejections[0].reason


def test_critical_instances_are_rejected_and_warning_skipped_unless_kept() -> None:
    body = [
        entry(instance="a", address="10.0.0.1", checks=["passing", "critical"]),
        entry(instance="b", address="10.0.0.2", checks=["passing", "warning"], Weights={"Passing": 4, "Warning": 2}),
    ]
    default = health_entries("web", body, Rules())
    assert default.servers == ()
    assert default.skipped_warning == 1
    kept = health_entries("web", body, Rules(include_warning=True))
    assert kept.servers == (Server("10.0.0.2", 8080, weight=2),)


def test_warning_weight_zero_means_no_traffic() -> None:
    body = [entry(checks=["warning"], Weights={"Passing": 4, "Warning": 0})]
    assert health_entries("web", body, Rules(include_warning=True)).servers == ()


def test_an_answer_for_another_service_is_refused() -> None:
    result = health_entries("web", [entry(service="api")], Rules())
    assert result.servers == ()
    assert result.rejections[0].field == "Service.Service"


@pytest.mark.parametrize("body", [{}, "x", None, 3])
def test_an_answer_that_is_not_a_list_is_refused_whole(body: object) -> None:
    with pytest.raises(AnswerInvalid):
        health_entries("web", body, Rules())


@pytest.mark.parametrize("junk", [None, 3, "x", [], {"Node": "x"}, {"Node": {}, "Service": []}])
def test_malformed_entries_are_rejected_not_crashing(junk: object) -> None:
    result = health_entries("web", [junk, entry()], Rules())
    assert len(result.servers) == 1
    assert len(result.rejections) == 1


def test_catalog_selection_by_tag_skips_invalid_names() -> None:
    names, rejections = catalog_service_names(
        {"web": ["nginx"], "api": ["other"], "bad name": ["nginx"], "consul": [], "x;y": ["nginx"]}, ["nginx"]
    )
    assert names == {"web"}
    assert {r.value for r in rejections} == {"bad name", "x;y"}


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("web", True),
        ("web-2.internal_x", True),
        ("", False),
        ("-web", False),
        ("web{", False),
        ("a" * 129, False),
        ("wéb", False),
    ],
)
def test_upstream_names(value: str, ok: bool) -> None:
    if ok:
        assert validate.upstream_name(value) == value
    else:
        with pytest.raises(validate.Invalid):
            validate.upstream_name(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.0.0.1", "10.0.0.1"),
        ("[::1]", "::1"),
        ("2001:DB8::1", "2001:db8::1"),
        ("App.Example.com.", "app.example.com"),
    ],
)
def test_addresses_are_normalized(value: str, expected: str) -> None:
    assert validate.address(value, allow_hostname=True) == expected


@pytest.mark.parametrize("value", ["0.0.0.0", "::", "fe80::1%eth0", "999.1.1.1", "a..b", "-a.com", "1.2.3.4:80"])
def test_bad_addresses(value: str) -> None:
    with pytest.raises(validate.Invalid):
        validate.address(value, allow_hostname=True)
