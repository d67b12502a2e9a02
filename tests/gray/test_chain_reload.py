"""KV stages ahead of Consul's chain in reload mode: planned with the chain's resolution,
rendered by the routing renderer, carried out by a real nginx (requests from several
loopback source addresses)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from syncer.model import Server
from syncer.planning.desired import plan
from syncer.routing.compile import RoutingConfig, referenced_services
from syncer.routing.entries import parse_entry
from syncer.routing.render import RoutingRenderer
from syncer.sinks.render import Renderer
from syncer.testing.backends import BackendFarm
from syncer.testing.nginx import NginxProcess, nginx_binary
from syncer.testing.ports import free_port

from .stack import ask, rules_from

pytestmark = [pytest.mark.nginx, pytest.mark.skipif(nginx_binary() is None, reason="needs nginx")]

ENTRIES: list[dict[str, Any]] = [
    {"Kind": "service-defaults", "Name": "web", "Protocol": "http"},
    {
        "Kind": "service-resolver",
        "Name": "web",
        "DefaultSubset": "prod",
        "Subsets": {
            "prod": {"Filter": "Service.Meta.version == prod"},
            "pre": {"Filter": "Service.Meta.version == pre"},
            "v2": {"Filter": "Service.Meta.version == v2"},
        },
    },
    {
        "Kind": "service-router",
        "Name": "web",
        "Routes": [{"Match": {"HTTP": {"PathPrefix": "/new/"}}, "Destination": {"ServiceSubset": "v2"}}],
    },
]

KV: dict[str, Any] = {
    "gray/web/lists/testers": {"target": {"service": "web", "subset": "pre"}, "addresses": ["127.0.0.2", "::1"]},
    "gray/web/hosts": {"hosts": {"old.example.com": {"service": "web"}}},  # no subset: the default (prod)
}


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendFarm]:
    with BackendFarm(tmp_path_factory.mktemp("farm"), ["prod1", "pre1", "v2a"]) as backends:
        yield backends


def services(farm: BackendFarm) -> dict[str, tuple[Server, ...]]:
    return {
        "web": tuple(
            Server("127.0.0.1", farm.ports[name], instance_id=name, meta=(("version", version),))
            for name, version in (("prod1", "prod"), ("pre1", "pre"), ("v2a", "v2"))
        )
    }


def routing(values: dict[str, Any]) -> RoutingConfig:
    rules, rejections = rules_from(values)
    assert rejections == ()
    return dataclasses.replace(RoutingConfig.of(parse_entry(e) for e in ENTRIES), gray=rules)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, farm: BackendFarm) -> Iterator[int]:
    desired, compiled = plan(services(farm), routing(KV))
    assert compiled is not None
    assert compiled.errors == {}
    prefix = tmp_path_factory.mktemp("proxy")
    (prefix / "conf").mkdir()
    (prefix / "conf" / "upstreams.conf").write_text(Renderer().render(desired))
    for name, text in RoutingRenderer().render(desired.routing).items():
        (prefix / "conf" / name).write_text(text)
    port = free_port()
    conf = f"""worker_processes 1;
error_log logs/error.log warn;
pid logs/nginx.pid;
events {{ worker_connections 128; }}
http {{
    access_log off;
    include upstreams.conf;
    include syncer-routing.conf;
    server {{
        listen 127.0.0.1:{port}; listen [::1]:{port};
        location / {{ include syncer-routing-web.location; }}
    }}
}}
"""
    nginx = NginxProcess(prefix, conf)
    checked = nginx.test_config()
    assert checked.returncode == 0, checked.stderr + (prefix / "conf" / "syncer-routing.conf").read_text()
    nginx.start(wait_port=port)
    yield port
    nginx.stop()


@pytest.mark.parametrize(
    ("source", "path", "host", "backend"),
    [
        ("127.0.0.9", "/", "plain.test", "prod1"),  # resolver default subset
        ("127.0.0.9", "/new/x", "plain.test", "v2a"),  # the router's route
        ("127.0.0.2", "/", "plain.test", "pre1"),  # gray list
        ("127.0.0.2", "/new/x", "plain.test", "pre1"),  # gray list before the router
        ("::1", "/new/x", "plain.test", "pre1"),
        ("127.0.0.9", "/new/x", "old.example.com", "prod1"),  # host map before the router; no subset: default
    ],
)
def test_gray_stages_run_ahead_of_the_router(proxy: int, source: str, path: str, host: str, backend: str) -> None:
    reply = ask(proxy, path, source=source, host=host)
    assert (reply.status, reply.body.strip()) == (200, backend)


def test_a_target_subset_no_resolver_defines_fails_the_entry(farm: BackendFarm) -> None:
    """The chain refuses it like a route to an unknown subset: that entry keeps its last good table."""
    good, _ = plan(services(farm), routing(KV))
    bad_kv = {**KV, "gray/web/lists/x": {"target": {"service": "web", "subset": "nope"}, "addresses": ["10.0.0.1"]}}
    desired, compiled = plan(services(farm), routing(bad_kv), previous=good)
    assert compiled is not None
    assert "nope" in compiled.errors["web"]
    assert desired.routing["web"] == good.routing["web"]


def test_referenced_services_include_kv_targets() -> None:
    values = {"gray/web/hosts": {"hosts": {"a.example.com": {"service": "shop", "subset": "v2"}}}}
    assert "shop" in referenced_services(routing(values))
