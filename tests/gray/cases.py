"""Stages 1-4 as data: KV values, then (request -> expected pool) rows; "" means
no KV stage decided (Consul's chain, stages 5-7, would). Run against both modes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

WEB = {"service": "web"}

KV: dict[str, Any] = {
    "gray/web/override": {
        "header": {"name": "X-Canary"},
        "cookie": {"name": "canary"},
        "target": {**WEB, "subset": "canary"},
        "primary": {**WEB, "subset": "stable"},
    },
    "gray/web/lists/testers": {
        "target": {**WEB, "subset": "pre"},
        "priority": 10,
        "addresses": ["127.0.0.2", "127.0.0.16/28", "::1", "2001:db8::/32"],
    },
    "gray/web/lists/office": {
        "target": {**WEB, "subset": "office"},
        "priority": 20,
        "addresses": ["127.0.0.0/29", "10.0.0.0/8"],
    },
    "gray/web/hosts": {
        "hosts": {
            "api.example.com": {**WEB, "subset": "api"},
            "*.example.com": {**WEB, "subset": "wild"},
            "*.b.example.com": {**WEB, "subset": "deep"},
        }
    },
    # never without a primary: the KV stages stop, Consul decides
    "gray/shop/override": {"header": {"name": "X-Shop-Beta"}, "target": {"service": "shop", "subset": "beta"}},
    "gray/shop/hosts": {"hosts": {"new.shop.test": {"service": "shop-v2"}}, "default": {"service": "shop"}},
    # a list whose ranges are IPv4 only and collapse: rendered with geo `ranges`
    "gray/ranged/lists/a": {
        "target": {"service": "ranged", "subset": "a"},
        "addresses": ["127.0.0.8/29", "127.0.0.16/28", "127.0.0.32/27", "127.0.0.64/32"],
    },
}


@dataclass(frozen=True)
class Case:
    name: str
    entry: str
    expect: str
    source: str = "127.0.0.9"
    host: str = "plain.test"
    headers: dict[str, str] = field(default_factory=dict)
    via_trusted_proxy: bool = False  # sent to the realip (X-Forwarded-For) listener


CASES = [
    Case("no rule matches", "web", ""),
    Case("tester address", "web", "web.pre", source="127.0.0.2"),
    Case("office address, tester list has priority elsewhere", "web", "web.office", source="127.0.0.3"),
    Case("tester CIDR", "web", "web.pre", source="127.0.0.20"),
    Case("IPv6 client in the tester list", "web", "web.pre", source="::1"),
    Case("exact host", "web", "web.api", host="api.example.com"),
    Case("host is lowercased, port dropped", "web", "web.api", host="API.Example.COM:8080"),
    Case("wildcard host", "web", "web.wild", host="x.example.com"),
    Case("longest wildcard wins", "web", "web.deep", host="a.b.example.com"),
    Case("wildcard does not match the bare suffix's parent", "web", "web.wild", host="b.example.com"),
    Case("bare domain is no wildcard match", "web", "", host="example.com"),
    Case("address list before host map", "web", "web.office", source="127.0.0.3", host="api.example.com"),
    Case("header always", "web", "web.canary", source="127.0.0.2", headers={"X-Canary": "always"}),
    Case("header never -> primary", "web", "web.stable", source="127.0.0.2", headers={"X-Canary": "never"}),
    Case("other header value falls through", "web", "web.pre", source="127.0.0.2", headers={"X-Canary": "yes"}),
    Case("cookie always", "web", "web.canary", headers={"Cookie": "a=1; canary=always"}),
    Case("cookie never -> primary", "web", "web.stable", host="api.example.com", headers={"Cookie": "canary=never"}),
    Case(
        "header before cookie",
        "web",
        "web.stable",
        headers={"X-Canary": "never", "Cookie": "canary=always"},
    ),
    Case(
        "never without primary stops the KV stages",
        "shop",
        "",
        host="new.shop.test",
        headers={"X-Shop-Beta": "never"},
    ),
    Case("shop header always", "shop", "shop.beta", headers={"X-Shop-Beta": "always"}),
    Case("shop exact host", "shop", "shop-v2", host="new.shop.test"),
    Case("shop host default", "shop", "shop", host="elsewhere.test"),
    Case("ranges: inside", "ranged", "ranged.a", source="127.0.0.40"),
    Case("ranges: last single address", "ranged", "ranged.a", source="127.0.0.64"),
    Case("ranges: outside", "ranged", "", source="127.0.0.65"),
    Case("ranges: IPv6 client is outside", "ranged", "", source="::1"),
    Case(
        "trusted proxy: X-Forwarded-For counts",
        "web",
        "web.office",
        source="127.0.0.5",
        headers={"X-Forwarded-For": "10.1.2.3"},
        via_trusted_proxy=True,
    ),
    Case(
        "trusted proxy: the last untrusted hop counts",
        "web",
        "web.pre",
        source="127.0.0.5",
        headers={"X-Forwarded-For": "10.1.2.3, 127.0.0.2"},
        via_trusted_proxy=True,
    ),
    Case(
        "untrusted peer: its X-Forwarded-For is ignored",
        "web",
        "",
        source="127.0.0.9",
        headers={"X-Forwarded-For": "127.0.0.2"},
        via_trusted_proxy=True,
    ),
]
