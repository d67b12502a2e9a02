"""The conformance table: (config entries, request) -> the pool that must answer.

Data only. Run against real nginx in both modes by test_conformance.py; each pool has
exactly one backend, so the backend that answered names the pool. Sticky rows come
from split_clients' arithmetic (MurmurHash2 of the cookie, 0.01 % boundaries), which
the Lua router reproduces.
"""

from __future__ import annotations

from typing import Any

# instance -> (service, meta, tags); the pools: web.v1 = v1a, web.v2 = v2a, legacy, api
INSTANCES: dict[str, tuple[str, dict[str, str], list[str]]] = {
    "v1a": ("web", {"version": "1"}, []),
    "v2a": ("web", {"version": "2"}, ["canary"]),
    "legacy1": ("legacy", {}, []),
    "api1": ("api", {}, []),
}
POOL_BACKEND = {"web.v1": "v1a", "web.v2": "v2a", "legacy": "legacy1", "api": "api1"}

HTTP = {"Kind": "service-defaults", "Name": "web", "Protocol": "http"}
RESOLVER = {
    "Kind": "service-resolver", "Name": "web", "DefaultSubset": "v1",
    "Subsets": {"v1": {"Filter": "Service.Meta.version == 1"}, "v2": {"Filter": "Service.Meta.version == 2"},
                "empty": {"Filter": "nope in Service.Tags"}},
    "Failover": {"empty": {"ServiceSubset": "v2"}},
}  # fmt: skip


def route(match: dict[str, Any], **destination: Any) -> dict[str, Any]:
    return {"Match": {"HTTP": match}, "Destination": destination}


EVIL = 'a"; return 500; # }'

SCENARIOS: dict[str, list[dict[str, Any]]] = {
    "routes": [HTTP, RESOLVER, {"Kind": "service-router", "Name": "web", "Routes": [
        route({"PathExact": "/exact"}, ServiceSubset="v2"),
        route({"PathPrefix": "/api/user/user.info3"}, ServiceSubset="v2"),
        route({"PathRegex": "/re/[a-z]+\\.json"}, Service="legacy"),
        route({"Methods": ["POST"], "Header": [{"Name": "X-Canary", "Exact": "1"}]}, ServiceSubset="v2"),
        route({"Header": [{"Name": "X-Ver", "Prefix": "2."}]}, ServiceSubset="v2"),
        route({"Header": [{"Name": "X-Env", "Suffix": "-canary"}]}, ServiceSubset="v2"),
        route({"Header": [{"Name": "X-Id", "Regex": "[0-9]{3}"}]}, ServiceSubset="v2"),
        route({"Header": [{"Name": "X-Beta", "Present": True}]}, Service="api"),
        route({"PathPrefix": "/inv/", "Header": [{"Name": "X-Stable", "Exact": "yes", "Invert": True}]},
              ServiceSubset="v2"),
        route({"QueryParam": [{"Name": "v", "Exact": "2"}]}, ServiceSubset="v2"),
        route({"QueryParam": [{"Name": "canary", "Present": True}]}, Service="api"),
        route({"QueryParam": [{"Name": "q", "Regex": "a+b"}]}, Service="legacy"),
        route({"PathPrefix": "/admin"}, Service="legacy"),
        route({"Header": [{"Name": "X-Evil", "Exact": EVIL}]}, Service="api"),
        route({"PathPrefix": "/fo"}, ServiceSubset="empty"),
    ]}],
    "sticky-split": [HTTP, RESOLVER, {"Kind": "service-splitter", "Name": "web",
                                      "Meta": {"syncer-sticky": "cookie:uid"},
                                      "Splits": [{"Weight": 50, "ServiceSubset": "v1"},
                                                 {"Weight": 50, "ServiceSubset": "v2"}]}],
    # no failover for "empty": its leg gives its weight to v1 (nobody gets a 502)
    "empty-canary": [HTTP, {**RESOLVER, "Failover": {}}, {"Kind": "service-splitter", "Name": "web", "Splits": [
        {"Weight": 10, "ServiceSubset": "v1"}, {"Weight": 90, "ServiceSubset": "empty"}]}],
    "redirect": [{"Kind": "service-resolver", "Name": "web", "Redirect": {"Service": "legacy"}}],
}  # fmt: skip

# (scenario, method, path, headers) -> pool
ROWS: list[tuple[str, str, str, dict[str, str], str]] = [
    ("routes", "GET", "/", {}, "web.v1"),
    ("routes", "GET", "/exact", {}, "web.v2"),
    ("routes", "GET", "/exact/", {}, "web.v1"),
    ("routes", "GET", "/exact%0A", {}, "web.v1"),  # $uri is "/exact\n": PCRE's "$" would match it, "\z" does not
    ("routes", "GET", "/api/user/user.info3", {}, "web.v2"),
    ("routes", "GET", "/api/user/user.info1", {}, "web.v1"),
    ("routes", "GET", "/re/abc.json", {}, "legacy"),
    ("routes", "GET", "/re/abc.jsonx", {}, "web.v1"),
    ("routes", "GET", "/re/abc.json%0A", {}, "web.v1"),
    ("routes", "GET", "/x/re/abc.json", {}, "web.v1"),
    ("routes", "POST", "/p", {"X-Canary": "1"}, "web.v2"),
    ("routes", "GET", "/p", {"X-Canary": "1"}, "web.v1"),
    ("routes", "GET", "/", {"X-Ver": "2.1"}, "web.v2"),
    ("routes", "GET", "/", {"X-Ver": "1.2"}, "web.v1"),
    ("routes", "GET", "/", {"X-Env": "eu-canary"}, "web.v2"),
    ("routes", "GET", "/", {"X-Id": "123"}, "web.v2"),
    ("routes", "GET", "/", {"X-Id": "1234"}, "web.v1"),
    ("routes", "GET", "/", {"X-Beta": "yes"}, "api"),
    ("routes", "GET", "/inv/x", {}, "web.v2"),
    ("routes", "GET", "/inv/x", {"X-Stable": "yes"}, "web.v1"),
    ("routes", "GET", "/?v=2", {}, "web.v2"),
    ("routes", "GET", "/?v=22", {}, "web.v1"),
    ("routes", "GET", "/?canary=1", {}, "api"),
    ("routes", "GET", "/?q=aab", {}, "legacy"),
    ("routes", "GET", "/?q=aabc", {}, "web.v1"),
    ("routes", "GET", "/administrator", {}, "legacy"),
    ("routes", "GET", "/exact", {"X-Beta": "yes"}, "web.v2"),  # the first matching route wins
    ("routes", "GET", "/", {"X-Evil": EVIL}, "api"),
    ("routes", "GET", "/", {"X-Evil": "a"}, "web.v1"),
    ("routes", "GET", "/fo", {}, "web.v2"),  # subset "empty" fails over to v2
    ("sticky-split", "GET", "/", {"Cookie": "uid=alice"}, "web.v1"),
    ("sticky-split", "GET", "/", {"Cookie": "uid=bob"}, "web.v1"),
    ("sticky-split", "GET", "/", {"Cookie": "uid=dave"}, "web.v2"),
    ("sticky-split", "GET", "/", {"Cookie": "uid=erin"}, "web.v2"),
    ("sticky-split", "GET", "/", {"Cookie": "uid=frank"}, "web.v1"),
    ("sticky-split", "GET", "/", {"Cookie": "uid=grace"}, "web.v2"),
    ("empty-canary", "GET", "/", {}, "web.v1"),
    ("empty-canary", "GET", "/a", {}, "web.v1"),
    ("redirect", "GET", "/", {}, "legacy"),
]

# --- KV gray stages 1-4 ahead of the routes (issue 11, docs/kv-layout.md) ----------------
# KV values written under syncer/, on top of the "routes" scenario's entries.
GRAY_KV: dict[str, Any] = {
    "syncer/gray/web/override": {
        "header": {"name": "X-Gray"}, "cookie": {"name": "gray"},
        "target": {"service": "web", "subset": "v2"}, "primary": {"service": "web", "subset": "v1"}},
    "syncer/gray/web/lists/testers": {
        "target": {"service": "web", "subset": "v2"}, "addresses": ["127.0.0.2", "127.0.0.16/30"]},
    "syncer/gray/web/lists/office": {
        "target": {"service": "legacy"}, "priority": 200, "addresses": ["127.0.0.0/27"]},
    "syncer/gray/web/hosts": {"hosts": {
        "old.example.com": {"service": "legacy"}, "*.api.example.com": {"service": "api"}}},
}  # fmt: skip

# (source address, method, path, host, headers) -> pool
GRAY_ROWS: list[tuple[str, str, str, str, dict[str, str], str]] = [
    ("127.0.0.2", "GET", "/", "web", {}, "web.v2"),  # tester list
    ("127.0.0.18", "GET", "/", "web", {}, "web.v2"),  # tester CIDR
    ("127.0.0.2", "GET", "/re/abc.json", "web", {}, "web.v2"),  # list before the router
    ("127.0.0.9", "GET", "/", "web", {}, "legacy"),  # the lower-priority office list
    ("127.0.0.17", "GET", "/", "web", {}, "web.v2"),  # in both lists: testers first
    ("127.0.0.40", "GET", "/re/abc.json", "web", {}, "legacy"),  # no list: the router
    ("127.0.0.40", "GET", "/", "web", {}, "web.v1"),  # no rule at all: the resolver default
    ("127.0.0.40", "GET", "/exact", "old.example.com", {}, "legacy"),  # host map before the router
    ("127.0.0.40", "GET", "/exact", "x.api.example.com", {}, "api"),  # wildcard host
    ("127.0.0.40", "GET", "/exact", "api.example.com", {}, "web.v2"),  # the bare suffix: no match, router
    ("127.0.0.2", "GET", "/", "old.example.com", {}, "web.v2"),  # list before host map
    ("127.0.0.40", "GET", "/", "web", {"X-Gray": "always"}, "web.v2"),  # override header
    ("127.0.0.2", "GET", "/", "web", {"X-Gray": "never"}, "web.v1"),  # never: primary, before the list
    ("127.0.0.40", "GET", "/exact", "web", {"Cookie": "gray=never"}, "web.v1"),  # cookie before the router
    ("127.0.0.40", "GET", "/", "web", {"Cookie": "gray=always", "X-Gray": "never"}, "web.v1"),  # header first
    ("127.0.0.40", "GET", "/", "web", {"X-Gray": "maybe"}, "web.v1"),  # other values fall through
]
