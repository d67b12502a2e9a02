"""Health and catalog reads: shapes, serfHealth, passing, tags, filters, TTL expiry."""

from __future__ import annotations

import time
from collections.abc import Callable

import requests

from syncer.devconsul import DevConsul
from syncer.testing.wait import wait_until


def test_health_entry_shape(register_web: Callable[..., None], dev: DevConsul, http: requests.Session) -> None:
    register_web(Meta={"version": "1.2"})
    resp = http.get(f"{dev.url}/v1/health/service/web", timeout=5)
    assert resp.headers["Content-Type"] == "application/json"
    [entry] = resp.json()
    assert list(entry) == ["Node", "Service", "Checks"]
    assert list(entry["Node"]) == [
        "ID",
        "Node",
        "Address",
        "Datacenter",
        "TaggedAddresses",
        "Meta",
        "CreateIndex",
        "ModifyIndex",
    ]
    assert entry["Node"]["Node"] == "dev-node"
    assert entry["Node"]["Address"] == "127.0.0.1"
    service = entry["Service"]
    assert list(service) == [
        "ID",
        "Service",
        "Tags",
        "Address",
        "TaggedAddresses",
        "Meta",
        "Port",
        "Weights",
        "EnableTagOverride",
        "Proxy",
        "Connect",
        "PeerName",
        "CreateIndex",
        "ModifyIndex",
    ]
    assert (service["ID"], service["Service"], service["Port"]) == ("web1", "web", 8080)
    assert service["Weights"] == {"Passing": 1, "Warning": 1}
    # The node's serfHealth check comes first, then the service's own checks.
    assert [c["CheckID"] for c in entry["Checks"]] == ["serfHealth", "service:web1"]
    assert entry["Checks"][0]["Output"] == "Agent alive and reachable"
    assert list(entry["Checks"][1]) == [
        "Node",
        "CheckID",
        "Name",
        "Status",
        "Notes",
        "Output",
        "ServiceID",
        "ServiceName",
        "ServiceTags",
        "Type",
        "Interval",
        "Timeout",
        "ExposedPort",
        "Definition",
        "CreateIndex",
        "ModifyIndex",
    ]


def test_service_without_meta_or_port_marshals_like_go(dev: DevConsul, http: requests.Session) -> None:
    http.put(f"{dev.url}/v1/agent/service/register", json={"Name": "bare"}, timeout=5)
    [entry] = http.get(f"{dev.url}/v1/health/service/bare", timeout=5).json()
    assert entry["Service"]["Meta"] is None  # nil map: null
    assert "Port" not in entry["Service"]  # Port is omitempty on NodeService
    assert entry["Service"]["Tags"] == []
    [flat] = http.get(f"{dev.url}/v1/catalog/service/bare", timeout=5).json()
    assert (flat["ServiceMeta"], flat["ServicePort"], flat["ServiceTags"]) == ({}, 0, [])


def test_passing_needs_every_check_including_serf_health(
    register_web: Callable[..., None], dev: DevConsul, http: requests.Session
) -> None:
    register_web()
    register_web(ID="web2", Check={"TTL": "30s"})  # starts critical
    names = [e["Service"]["ID"] for e in http.get(f"{dev.url}/v1/health/service/web?passing", timeout=5).json()]
    assert names == ["web1"]
    assert len(http.get(f"{dev.url}/v1/health/service/web", timeout=5).json()) == 2
    # A node-level check failing (maintenance here) takes every instance out of ?passing.
    http.put(f"{dev.url}/v1/agent/maintenance?enable=true", timeout=5)
    assert http.get(f"{dev.url}/v1/health/service/web?passing=1", timeout=5).json() == []
    bad = http.get(f"{dev.url}/v1/health/service/web?passing=maybe", timeout=5)
    assert (bad.status_code, bad.text) == (400, "Invalid value for ?passing")


def test_tags_are_anded_and_case_insensitive(
    register_web: Callable[..., None], dev: DevConsul, http: requests.Session
) -> None:
    register_web(Tags=["v1", "Blue"])
    register_web(ID="web2", Tags=["v1"])
    url = f"{dev.url}/v1/health/service/web"
    assert len(http.get(url, params={"tag": "v1"}, timeout=5).json()) == 2
    assert len(http.get(url, params=[("tag", "v1"), ("tag", "blue")], timeout=5).json()) == 1
    assert http.get(url, params={"tag": "green"}, timeout=5).json() == []


def test_filter_expressions(register_web: Callable[..., None], dev: DevConsul, http: requests.Session) -> None:
    register_web(Meta={"env": "qa"})
    register_web(ID="web2", Port=9090, Tags=["v2"], Meta={"env": "prod"})
    url = f"{dev.url}/v1/health/service/web"

    def ids(expr: str) -> list[str]:
        resp = http.get(url, params={"filter": expr}, timeout=5)
        assert resp.status_code == 200, resp.text
        return sorted(e["Service"]["ID"] for e in resp.json())

    assert ids('Service.Meta.env == "qa"') == ["web1"]
    assert ids('"v2" in Service.Tags') == ["web2"]
    assert ids("Service.Tags contains v1") == ["web1"]
    assert ids("Service.Port == 9090 or Service.ID == web1") == ["web1", "web2"]
    assert ids('not (Service.Port == 9090) and Node.Node == "dev-node"') == ["web1"]
    assert ids('Service.ID matches "^web[12]$"') == ["web1", "web2"]
    assert ids('Checks.Status != "passing"') == []
    assert ids("Service.Meta is not empty") == ["web1", "web2"]
    assert ids('Service.Address != "10.0.0.1"') == []
    bad = http.get(url, params={"filter": "Service.Nope == 1"}, timeout=5)
    assert bad.status_code == 500
    assert bad.text == 'Failed to create boolean expression evaluator: Selector ["Service" "Nope"] is not valid'


def test_ttl_expiry_turns_the_check_critical(dev: DevConsul, http: requests.Session) -> None:
    http.put(
        f"{dev.url}/v1/agent/service/register",
        json={"Name": "web", "Check": {"TTL": "300ms", "Status": "passing"}},
        timeout=5,
    )
    start = time.monotonic()
    http.put(f"{dev.url}/v1/agent/check/pass/service:web?note=fine", timeout=5)

    def status() -> str | None:
        check = http.get(f"{dev.url}/v1/health/checks/web", timeout=5).json()[0]
        return check["Status"] if check["Status"] == "critical" else None

    wait_until(status, timeout=5, message="TTL check to expire")
    assert time.monotonic() - start >= 0.3
    local = http.get(f"{dev.url}/v1/agent/checks", timeout=5).json()["service:web"]
    assert local["Output"] == "TTL expired (last output before timeout follows): fine"


def test_output_only_changes_are_deferred_to_the_catalog(
    register_web: Callable[..., None], dev: DevConsul, http: requests.Session
) -> None:
    register_web()
    http.put(f"{dev.url}/v1/agent/check/pass/service:web1?note=a", timeout=5)
    catalog = http.get(f"{dev.url}/v1/health/checks/web", timeout=5).json()[0]
    local = http.get(f"{dev.url}/v1/agent/checks", timeout=5).json()["service:web1"]
    # Same status, new output: the agent keeps it and syncs it after check_update_interval.
    assert (local["Output"], catalog["Output"]) == ("a", "")


def test_catalog_views(register_web: Callable[..., None], dev: DevConsul, http: requests.Session) -> None:
    register_web(Tags=["v2", "v1"])
    register_web(ID="web2", Tags=["v1", "canary"])
    services = http.get(f"{dev.url}/v1/catalog/services", timeout=5).json()
    assert services == {"consul": [], "web": ["canary", "v1", "v2"]}
    flat = http.get(f"{dev.url}/v1/catalog/service/web", params={"tag": "canary"}, timeout=5).json()
    assert [(e["ServiceID"], e["ServiceAddress"], e["ServicePort"], e["Node"]) for e in flat] == [
        ("web2", "10.0.0.1", 8080, "dev-node")
    ]
    for key in (
        "ID",
        "Node",
        "Address",
        "Datacenter",
        "TaggedAddresses",
        "NodeMeta",
        "ServiceID",
        "ServiceName",
        "ServiceTags",
        "ServiceAddress",
        "ServicePort",
        "ServiceMeta",
        "ServiceWeights",
        "ServiceEnableTagOverride",
        "CreateIndex",
        "ModifyIndex",
    ):
        assert key in flat[0]
    nodes = http.get(f"{dev.url}/v1/catalog/nodes", timeout=5).json()
    assert [n["Node"] for n in nodes] == ["dev-node"]
    assert http.get(f"{dev.url}/v1/catalog/datacenters", timeout=5).json() == ["dc1"]
    assert http.get(f"{dev.url}/v1/status/leader", timeout=5).json() == "127.0.0.1:8300"
    assert http.get(f"{dev.url}/v1/status/peers", timeout=5).json() == ["127.0.0.1:8300"]
    state = http.get(f"{dev.url}/v1/health/state/passing", timeout=5).json()
    assert {c["CheckID"] for c in state} == {"serfHealth", "service:web1", "service:web2"}


def test_catalog_register_and_deregister(dev: DevConsul, http: requests.Session) -> None:
    body = {
        "Node": "ext-1",
        "Address": "192.0.2.10",
        "NodeMeta": {"rack": "a"},
        "Service": {"Service": "redis", "ID": "redis1", "Port": 6379, "Tags": ["primary"]},
        "Check": {"CheckID": "service:redis1", "Name": "Redis", "Status": "passing", "ServiceID": "redis1"},
    }
    resp = http.put(f"{dev.url}/v1/catalog/register", json=body, timeout=5)
    assert (resp.status_code, resp.json()) == (200, True)
    [entry] = http.get(f"{dev.url}/v1/health/service/redis?passing", timeout=5).json()
    assert entry["Node"]["Address"] == "192.0.2.10"
    assert entry["Checks"][0]["CheckID"] == "service:redis1"  # an external node has no serfHealth
    by_meta = http.get(f"{dev.url}/v1/catalog/nodes", params={"node-meta": "rack:a"}, timeout=5).json()
    assert [n["Node"] for n in by_meta] == ["ext-1"]
    missing = http.put(f"{dev.url}/v1/catalog/register", json={"Address": "1.2.3.4"}, timeout=5)
    assert (missing.status_code, missing.text) == (500, "Must provide node")
    resp = http.put(f"{dev.url}/v1/catalog/deregister", json={"Node": "ext-1", "ServiceID": "redis1"}, timeout=5)
    assert resp.json() is True
    assert http.get(f"{dev.url}/v1/health/service/redis", timeout=5).json() == []
    http.put(f"{dev.url}/v1/catalog/deregister", json={"Node": "ext-1"}, timeout=5)
    assert [n["Node"] for n in http.get(f"{dev.url}/v1/catalog/nodes", timeout=5).json()] == ["dev-node"]


def test_unknown_paths_and_datacenters(dev: DevConsul, http: requests.Session) -> None:
    resp = http.get(f"{dev.url}/v1/nope", timeout=5)
    assert (resp.status_code, resp.text) == (404, "Invalid URL path: not a recognized HTTP API endpoint\n")
    other_dc = http.get(f"{dev.url}/v1/health/service/web?dc=dc2", timeout=5)
    assert (other_dc.status_code, other_dc.text) == (500, "No path to datacenter")
