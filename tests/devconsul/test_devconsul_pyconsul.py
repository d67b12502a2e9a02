"""py-consul, unmodified, against dev-consul: the calls syncer and its tests make."""

from __future__ import annotations

import time

import consul

from syncer.devconsul import DevConsul


def test_agent_health_catalog_round_trip(client: consul.Consul) -> None:
    assert client.agent.service.register(
        "web",
        service_id="web1",
        address="10.0.0.1",
        port=80,
        tags=["v1"],
        meta={"env": "qa"},
        weights={"Passing": 3, "Warning": 1},
        check=consul.Check.ttl("30s"),
    )
    index, nodes = client.health.service("web", passing=True)
    assert nodes == []  # the TTL check starts critical
    assert client.agent.check.ttl_pass("service:web1", notes="ready")
    new_index, nodes = client.health.service("web", passing=True, index=index, wait="5s")
    assert int(new_index) > int(index)
    [entry] = nodes
    assert entry["Service"]["Address"] == "10.0.0.1"
    assert entry["Service"]["Weights"] == {"Passing": 3, "Warning": 1}
    assert {c["CheckID"]: c["Status"] for c in entry["Checks"]} == {"serfHealth": "passing", "service:web1": "passing"}
    assert client.agent.services()["web1"]["Tags"] == ["v1"]
    services_index, services = client.catalog.services()
    assert services["web"] == ["v1"]
    _, flat = client.catalog.service("web", tag="v1")
    assert flat[0]["ServicePort"] == 80
    assert client.agent.check.ttl_warn("service:web1")
    assert client.agent.check.ttl_fail("service:web1", notes="boom")
    assert client.agent.checks()["service:web1"]["Output"] == "boom"
    assert client.agent.service.maintenance("web1", True, reason="x")
    assert client.agent.service.maintenance("web1", False)
    assert client.agent.service.deregister("web1")
    _, services = client.catalog.services(index=services_index, wait="5s")
    assert "web" not in services


def test_blocking_wait_returns_after_the_wait(client: consul.Consul) -> None:
    index, _ = client.catalog.services()
    start = time.monotonic()
    same, _ = client.catalog.services(index=index, wait="1s")
    assert same == index
    assert time.monotonic() - start >= 1.0


def test_kv(client: consul.Consul) -> None:
    assert client.kv.put("cfg/a", "1")
    assert client.kv.put("cfg/b", b"\x00\x01", flags=7)
    index, entries = client.kv.get("cfg/", recurse=True)
    assert [(e["Key"], e["Value"]) for e in entries] == [("cfg/a", b"1"), ("cfg/b", b"\x00\x01")]
    _, one = client.kv.get("cfg/b")
    assert one["Flags"] == 7
    assert client.kv.put("cfg/a", "2", cas=0) is False
    assert client.kv.put("cfg/a", "2", cas=one["ModifyIndex"] + 100) is False
    assert client.kv.put("cfg/a", "2", cas=entries[0]["ModifyIndex"]) is True
    _, keys = client.kv.get("cfg/", keys=True)
    assert keys == ["cfg/a", "cfg/b"]
    assert client.kv.delete("cfg/", recurse=True)
    assert client.kv.get("cfg/a") == (client.kv.get("cfg/a")[0], None)
    _, nothing = client.kv.get("cfg/", recurse=True, index=index, wait="1s")
    assert nothing is None


def test_catalog_register_and_check_register(client: consul.Consul, dev: DevConsul) -> None:
    assert client.catalog.register(
        "ext",
        "192.0.2.1",
        service={"Service": "db", "ID": "db1", "Port": 5432},
        check={"CheckID": "db-ok", "Name": "db", "Status": "passing", "ServiceID": "db1"},
    )
    _, nodes = client.health.service("db", passing=True)
    assert nodes[0]["Node"]["Node"] == "ext"
    assert client.catalog.deregister("ext")
    client.agent.service.register("api", port=1)
    assert client.agent.check.register("api-ttl", consul.Check.ttl("30s"), service_id="api")
    assert client.agent.checks()["api-ttl"]["ServiceName"] == "api"
    assert client.agent.check.deregister("api-ttl")
    assert client.status.leader() == "127.0.0.1:8300"
    assert client.agent.self()["Config"]["NodeName"] == "dev-node"
