"""The KV stages ahead of Consul's chain, end to end in both modes: instances, config
entries and KV written to the dev Consul over HTTP, read back by the Sources, planned,
applied by the real sink to an nginx from `syncer nginx-example`, and real requests from
several loopback source addresses (127.0.0.x, ::1) counted by the backend that answered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from syncer.devconsul.server import DevConsul
from syncer.testing.backends import BackendFarm
from syncer.testing.consul import ConsulWriter
from syncer.testing.nginx import has_lua_module, nginx_binary
from syncer.testing.routing import RoutingLab

from .stack import ipv6_loopback

pytestmark = [
    pytest.mark.nginx,
    pytest.mark.skipif(nginx_binary() is None or not has_lua_module(), reason="needs nginx with the Lua module"),
]

# backend name -> (service, Meta.version)
INSTANCES = {
    "prod1": ("web", "prod"),
    "pre1": ("web", "pre"),
    "canary1": ("web", "canary"),
    "v2a": ("web", "v2"),
    "shop1": ("shop", "1"),
}

ENTRIES: list[dict[str, Any]] = [
    {"Kind": "service-defaults", "Name": "web", "Protocol": "http"},
    {
        "Kind": "service-resolver",
        "Name": "web",
        "DefaultSubset": "prod",
        "Subsets": {v: {"Filter": f"Service.Meta.version == {v}"} for v in ("prod", "pre", "canary", "v2")},
    },
    {
        "Kind": "service-router",
        "Name": "web",
        "Routes": [{"Match": {"HTTP": {"PathPrefix": "/new/"}}, "Destination": {"ServiceSubset": "v2"}}],
    },
]

KV: dict[str, Any] = {
    "syncer/gray/web/override": {
        "header": {"name": "X-Canary"},
        "cookie": {"name": "canary"},
        "target": {"service": "web", "subset": "canary"},
        "primary": {"service": "web", "subset": "prod"},
    },
    "syncer/gray/web/lists/testers": {
        "target": {"service": "web", "subset": "pre"},
        "addresses": ["127.0.0.2", "127.0.0.3", "::1", "10.0.0.0/8"],
    },
    "syncer/gray/web/hosts": {
        "hosts": {"shop.example.com": {"service": "shop"}, "*.v2.example.com": {"service": "web", "subset": "v2"}}
    },
}

# (name, source, path, host, headers, backend)
CASES: list[tuple[str, str, str, str, dict[str, str], str]] = [
    ("nobody: resolver default", "127.0.0.9", "/", "web", {}, "prod1"),
    ("nobody: router route", "127.0.0.9", "/new/a", "web", {}, "v2a"),
    ("tester", "127.0.0.2", "/", "web", {}, "pre1"),
    ("another tester", "127.0.0.3", "/", "web", {}, "pre1"),
    ("tester before the router", "127.0.0.2", "/new/a", "web", {}, "pre1"),
    ("IPv6 tester", "::1", "/", "web", {}, "pre1"),
    ("host map to another service", "127.0.0.9", "/", "shop.example.com", {}, "shop1"),
    ("wildcard host", "127.0.0.9", "/", "a.v2.example.com", {}, "v2a"),
    ("header always beats the list", "127.0.0.2", "/", "web", {"X-Canary": "always"}, "canary1"),
    ("cookie never -> primary beats the router", "127.0.0.9", "/new/a", "web", {"Cookie": "canary=never"}, "prod1"),
    ("trusted proxy's X-Forwarded-For", "127.0.0.5", "/", "web", {"X-Forwarded-For": "10.9.8.7"}, "pre1"),
    ("untrusted peer's X-Forwarded-For ignored", "127.0.0.9", "/", "web", {"X-Forwarded-For": "10.9.8.7"}, "prod1"),
]


def put_kv(consul: DevConsul, key: str, value: Any) -> None:
    response = requests.put(f"{consul.url}/v1/kv/{key}", data=json.dumps(value), timeout=5)
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendFarm]:
    with BackendFarm(tmp_path_factory.mktemp("farm"), list(INSTANCES)) as backends:
        yield backends


@pytest.fixture(scope="module")
def consul(farm: BackendFarm) -> Iterator[DevConsul]:
    server = DevConsul(port=0)
    server.start()
    writer = ConsulWriter(server.url)
    for name, (service, version) in INSTANCES.items():
        writer.register(service, name, farm.ports[name], meta={"version": version})
    for entry in ENTRIES:
        assert requests.put(f"{server.url}/v1/config", json=entry, timeout=5).text.strip() == "true"
    for key, value in KV.items():
        put_kv(server, key, value)
    writer.close()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["reload", "api"])
def proxy(
    request: pytest.FixtureRequest, consul: DevConsul, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RoutingLab]:
    lab = RoutingLab(
        request.param,
        tmp_path_factory.mktemp(request.param),
        consul.url,
        services=("web", "shop"),
        worker_processes=2,
        trusted_proxies=("127.0.0.5",),
        ipv6=ipv6_loopback(),
    ).start()
    lab.sync()
    yield lab
    lab.stop()


def backend(
    proxy: RoutingLab, source: str, path: str = "/", host: str = "web", headers: dict[str, str] | None = None
) -> str:
    return proxy.request(path, headers=headers, host=host, source=source).backend


@pytest.mark.parametrize(("name", "source", "path", "host", "headers", "expect"), CASES, ids=[c[0] for c in CASES])
def test_case(
    proxy: RoutingLab, name: str, source: str, path: str, host: str, headers: dict[str, str], expect: str
) -> None:
    if ":" in source and not ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    assert backend(proxy, source, path, host, headers) == expect


def test_adding_an_address_moves_that_client_on_its_next_request(proxy: RoutingLab, consul: DevConsul) -> None:
    """Seed 001: 127.0.0.7 is not a tester; after a KV write (and one sync) it is, in every worker."""
    assert backend(proxy, "127.0.0.7") == "prod1"
    testers = dict(KV["syncer/gray/web/lists/testers"])
    put_kv(consul, "syncer/gray/web/lists/testers", {**testers, "addresses": [*testers["addresses"], "127.0.0.7"]})
    try:
        proxy.sync()
        assert all(backend(proxy, "127.0.0.7") == "pre1" for _ in range(10))  # fresh connections: any worker
    finally:
        put_kv(consul, "syncer/gray/web/lists/testers", testers)
        proxy.sync()
    assert backend(proxy, "127.0.0.7") == "prod1"


def test_a_bad_kv_value_keeps_the_last_good_rules(proxy: RoutingLab, consul: DevConsul) -> None:
    testers = KV["syncer/gray/web/lists/testers"]
    put_kv(consul, "syncer/gray/web/lists/testers", {**testers, "addresses": ["127.0.0.7", "not-an-ip"]})
    try:
        proxy.sync()
        assert backend(proxy, "127.0.0.2") == "pre1"  # the last good list
        assert backend(proxy, "127.0.0.7") == "prod1"
    finally:
        put_kv(consul, "syncer/gray/web/lists/testers", testers)
        proxy.sync()
