"""Entries are untrusted: Consul's own refusals, and syncer's (injection, regexes, caps)."""

from __future__ import annotations

from typing import Any

import pytest

from syncer.routing import regex
from syncer.routing.entries import ConsulRefusal, EntryError, Resolver, Router, Splitter, parse_entry


def router(*routes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"Kind": "service-router", "Name": "web", "Routes": list(routes), **extra}


def http(**match: Any) -> dict[str, Any]:
    return {"Match": {"HTTP": match}}


CONSUL_REFUSES = [
    (router(http(PathExact="x")), "Route[0] PathExact doesn't start with '/': \"x\""),
    (router(http(PathExact="/a", PathPrefix="/b")),
     "Route[0] should only contain at most one of PathExact, PathPrefix, or PathRegex"),
    (router(http(Header=[{"Name": "x", "Exact": "1", "Prefix": "2"}])),
     "Route[0] Header[0] should only contain one of Present, Exact, Prefix, Suffix, or Regex"),
    (router(http(Header=[{"Exact": "1"}])), "Route[0] Header[0] missing required Name field"),
    (router(http(QueryParam=[{"Name": "v"}])),
     "Route[0] QueryParam[0] should only contain one of Present, Exact, or Regex"),
    (router(http(Methods=["FETCH"])), 'Route[0] Methods contains an invalid method "FETCH"'),
    (router(http(Methods=["get", "GET"])), 'Route[0] Methods contains "GET" more than once'),
    (router({**http(PathRegex="/x"), "Destination": {"PrefixRewrite": "/"}}),
     "Route[0] cannot make use of PrefixRewrite without configuring either PathExact or PathPrefix"),
    ({"Kind": "service-splitter", "Name": "web", "Splits": []}, "no splits configured"),
    ({"Kind": "service-splitter", "Name": "web", "Splits": [{"Weight": 99.99}]},
     "the sum of all split weights must be 100, not 99.990000"),
    ({"Kind": "service-splitter", "Name": "web", "Splits": [{"Weight": 50}, {"Weight": 50, "Service": "web"}]},
     'split destination occurs more than once: service="web", subset="", namespace="default", partition="default"'),
    ({"Kind": "service-resolver", "Name": "web", "Subsets": {"V1": {}}},
     'Subset "V1" is invalid: Service subset "V1" is invalid: must be a valid DNS label'),
    ({"Kind": "service-resolver", "Name": "web", "DefaultSubset": "v9"}, 'DefaultSubset "v9" is not a valid subset'),
    ({"Kind": "service-resolver", "Name": "web", "Subsets": {"v1": {"Filter": "Service.Meta.x =="}}},
     'Filter for subset "v1" is not a valid expression'),
    ({"Kind": "service-resolver", "Name": "web", "Redirect": {"Service": "a"}, "Failover": {"*": {"Service": "b"}}},
     "Redirect and Failover cannot both be set"),
    ({"Kind": "service-resolver", "Name": "web", "Failover": {"v1": {"Service": "b"}}},
     'Bad Failover["v1"]: not a valid subset subset'),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "message"), CONSUL_REFUSES, ids=[m[:40] for _, m in CONSUL_REFUSES])
def test_consul_refuses(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConsulRefusal) as caught:
        parse_entry(raw, strict=False)
    assert str(caught.value).startswith(message)


SYNCER_REFUSES = [
    (router(http(PathRegex="(a+)+")), "Routes[0].Match.HTTP.PathRegex", "catastrophic backtracking"),
    (router(http(PathRegex="(?=x)")), "Routes[0].Match.HTTP.PathRegex", "lookahead is not RE2"),
    (router(http(PathRegex="a\\1")), "Routes[0].Match.HTTP.PathRegex", "backreferences are not RE2"),
    (router(http(PathRegex="[a-")), "Routes[0].Match.HTTP.PathRegex", "does not compile"),
    (router(http(PathRegex="a" * 600)), "Routes[0].Match.HTTP.PathRegex", "longer than 512 characters"),
    (router(http(PathRegex="a\nb")), "Routes[0].Match.HTTP.PathRegex", "control character"),
    (router(http(PathPrefix="/a b")), "Routes[0].Match.HTTP.PathPrefix", "is not a path"),
    (router(http(PathPrefix="/$host")), "Routes[0].Match.HTTP.PathPrefix", "is not a path"),
    (router(http(Header=[{"Name": "x_y", "Present": True}])), "Routes[0].Match.HTTP.Header[0].Name", "header name"),
    (router(http(Header=[{"Name": ":authority", "Exact": "a"}])), "Routes[0].Match.HTTP.Header[0].Name", "header"),
    (router(http(Header=[{"Name": "x", "Exact": "$remote_addr"}])), "Routes[0].Match.HTTP.Header[0].Exact",
     "without '$'"),
    (router(http(Header=[{"Name": "x", "Exact": "a\x00"}])), "Routes[0].Match.HTTP.Header[0].Exact", "printable"),
    (router(http(QueryParam=[{"Name": "a-b", "Present": True}])), "Routes[0].Match.HTTP.QueryParam[0].Name",
     "query parameter name"),
    (router({"Destination": {"RequestHeaders": {"Set": {"X-A": "${x}"}}}}),
     "Routes[0].Destination.RequestHeaders.Set.X-A", "without '$'"),
    (router({"Destination": {"ServiceSubset": "Bad_Subset"}}), "Routes[0].Destination.ServiceSubset", "DNS label"),
    (router({"Destination": {"Service": "web;evil"}}), "Routes[0].Destination.Service", "service name"),
    (router({"Destination": {"RequestTimeout": "soon"}}), "Routes[0].Destination.RequestTimeout", "invalid duration"),
    ({"Kind": "service-splitter", "Name": "web", "Meta": {"syncer-sticky": "cookie:a-b"},
      "Splits": [{"Weight": 100}]}, "Meta.syncer-sticky", "is not 'cookie:<name>'"),
    ({"Kind": "service-resolver", "Name": "web", "Subsets": {"v1": {"Filter": "Checks.Status == passing"}}},
     "Subsets.v1.Filter", "syncer cannot evaluate it"),
    ({"Kind": "service-router", "Name": "web}", "Routes": []}, "Name", "must be a service name"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "where", "reason"), SYNCER_REFUSES, ids=[f"{w}:{r[:20]}" for _, w, r in SYNCER_REFUSES]
)
def test_syncer_refuses_with_kind_name_field_and_reason(raw: dict[str, Any], where: str, reason: str) -> None:
    with pytest.raises(EntryError) as caught:
        parse_entry(raw)
    assert caught.value.kind == raw["Kind"]
    assert caught.value.where == where
    assert reason in caught.value.reason
    assert str(caught.value).startswith(f'{raw["Kind"]} "')


def test_consul_does_not_check_what_only_syncer_needs() -> None:
    parse_entry(router(http(PathRegex="(a+)+")), strict=False)  # Consul leaves regexes to Envoy


def test_full_entry_and_ignored_fields() -> None:
    entry = parse_entry(router({
        "Match": {"HTTP": {"PathPrefix": "/api/", "Methods": ["get"], "Header": [{"Name": "X-A", "Suffix": "z"}]}},
        "Destination": {"Service": "api", "ServiceSubset": "v2", "PrefixRewrite": "/", "RequestTimeout": "1m30s",
                        "NumRetries": 2, "RetryOnConnectFailure": True, "RetryOn": ["5xx", "cancelled"],
                        "RetryOnStatusCodes": [503, 418], "Namespace": "team-a",
                        "ResponseHeaders": {"Add": {"X-B": "1"}, "Remove": ["Server"]}}}))  # fmt: skip
    assert isinstance(entry, Router)
    d = entry.routes[0].destination
    assert (d.service, d.subset, d.request_timeout, d.num_retries) == ("api", "v2", 90.0, 2)
    assert (d.retry_on, d.retry_on_status_codes) == (("5xx",), (503,))
    assert entry.routes[0].match.methods == ("GET",)
    assert len(entry.ignored) == 3  # "cancelled", 418, Namespace


def test_weights_scale_like_consul() -> None:
    splits = [{"Weight": 99.999, "ServiceSubset": "a"}, {"Weight": 0.001, "ServiceSubset": "b"}]
    entry = parse_entry({"Kind": "service-splitter", "Name": "web", "Splits": splits})
    assert isinstance(entry, Splitter)
    assert [s.units for s in entry.splits] == [10000, 0]


def test_snake_case_aliases_and_resolver() -> None:
    entry = parse_entry({"kind": "service-resolver", "name": "web", "default_subset": "v1",
                         "subsets": {"v1": {"filter": "Service.Meta.version == 1", "only_passing": True}},
                         "failover": {"*": {"service": "legacy", "datacenters": ["dc2"]}}})  # fmt: skip
    assert isinstance(entry, Resolver)
    assert entry.default_subset == "v1"
    assert entry.subsets["v1"].only_passing
    assert entry.failover["*"].service == "legacy"
    assert any("Datacenters" in note for note in entry.ignored)


@pytest.mark.parametrize("pattern", ["/api/v[0-9]+/.*", "(?i)abc", "(?:a|b)*c", "[a-z+]+", "\\d{2,4}", "x\\\\1"])
def test_regexes_both_engines_take(pattern: str) -> None:
    assert regex.check(pattern) == pattern
