"""The KV layout's validation: every refusal names the key, the field and the reason."""

from __future__ import annotations

import json
from typing import Any

import pytest

from syncer.routing import kv

P = "syncer/"


def parse(key: str, value: Any) -> object:
    kind = kv.classify(key, P)
    assert kind is not None
    obj = kv.decode(key, json.dumps(value).encode() if not isinstance(value, bytes) else value)
    if isinstance(kind, kv.OverrideKey):
        return kv.parse_override(key, obj)
    if isinstance(kind, kv.ListKey):
        return kv.parse_list(key, kind.name, obj)
    return kv.parse_hosts(key, obj)


def test_classify_keys_of_the_layout() -> None:
    """The three kinds of keys, folder keys and keys of other features under the prefix."""
    assert kv.classify("syncer/gray/web/override", P) == kv.OverrideKey("web")
    assert kv.classify("syncer/gray/web/hosts", P) == kv.HostsKey("web")
    assert kv.classify("syncer/gray/web/lists/office", P) == kv.ListKey("web", "office")
    assert kv.classify("syncer/gray/web/lists/", P) is None
    assert kv.classify("syncer/gray/", P) is None
    assert kv.classify("syncer/other/thing", P) is None
    assert kv.classify("custom/gray/api/hosts", "custom/") == kv.HostsKey("api")


@pytest.mark.parametrize(
    ("key", "field"),
    [
        ("syncer/gray/web/lists/a b", "<name> in the key"),
        ("syncer/gray/we;b/hosts", "<entry> in the key"),
        ("syncer/gray/web/extra", "key"),
        ("syncer/gray/web/lists/x/y", "key"),
    ],
)
def test_keys_outside_the_layout_are_refused(key: str, field: str) -> None:
    with pytest.raises(kv.KVInvalid) as err:
        kv.classify(key, P)
    assert err.value.field == field
    assert key in str(err.value)


GOOD_LIST = {"target": {"service": "web", "subset": "pre"}, "addresses": ["10.0.0.1", "10.1.0.0/16", "2001:db8::/32"]}


def test_a_good_list_parses() -> None:
    lst = parse("syncer/gray/web/lists/testers", GOOD_LIST)
    assert isinstance(lst, kv.AddressList)
    assert lst.target == kv.Target("web", "pre")
    assert lst.target.pool == "web.pre"
    assert lst.priority == 100
    assert [str(n) for n in lst.networks] == ["10.0.0.1/32", "10.1.0.0/16", "2001:db8::/32"]


@pytest.mark.parametrize(
    ("value", "field", "reason_part"),
    [
        ({**GOOD_LIST, "addresses": ["10.0.0.1", "10.0.0.300"]}, "addresses[1]", "not an address or CIDR"),
        ({**GOOD_LIST, "addresses": ["10.0.0.1/8"]}, "addresses[0]", "has host bits set"),
        ({**GOOD_LIST, "addresses": ["::ffff:10.0.0.1"]}, "addresses[0]", "IPv4-mapped"),
        ({**GOOD_LIST, "addresses": ["fe80::1%eth0"]}, "addresses[0]", ""),
        ({**GOOD_LIST, "addresses": [7]}, "addresses[0]", "must be an IPv4/IPv6"),
        ({**GOOD_LIST, "addresses": "10.0.0.1"}, "addresses", "must be an array"),
        ({**GOOD_LIST, "addresses": ["10.0.0.1"] * 10_001}, "addresses", "over the 10000 limit"),
        ({**GOOD_LIST, "target": {"service": "web;"}}, "target.service", "letters, digits"),
        ({**GOOD_LIST, "target": {"service": "web", "subset": "Pre"}}, "target.subset", "DNS label"),
        ({**GOOD_LIST, "target": {"service": "a.b"}}, "target.service", "must not contain '.'"),
        ({**GOOD_LIST, "target": "web"}, "target", "must be an object"),
        ({**GOOD_LIST, "priority": "1"}, "priority", "integer"),
        ({**GOOD_LIST, "priority": True}, "priority", "integer"),
        ({**GOOD_LIST, "colour": "red"}, "colour", "unknown field"),
        ({**GOOD_LIST, "target": {"service": "web", "weight": 3}}, "target.weight", "unknown field"),
    ],
)
def test_bad_lists_name_field_and_reason(value: Any, field: str, reason_part: str) -> None:
    key = "syncer/gray/web/lists/testers"
    with pytest.raises(kv.KVInvalid) as err:
        parse(key, value)
    assert err.value.key == key
    assert err.value.field == field
    assert reason_part in err.value.reason
    assert str(err.value).startswith(f"key {key!r}: field {field}: ")


@pytest.mark.parametrize(
    ("raw", "reason_part"),
    [(b"", "is empty"), (b"{nope", "not JSON"), (b"[1]", "JSON object"), (b"\xff\xfe", "not JSON")],
)
def test_values_that_are_not_json_objects(raw: bytes, reason_part: str) -> None:
    with pytest.raises(kv.KVInvalid) as err:
        parse("syncer/gray/web/hosts", raw)
    assert err.value.field == "value"
    assert reason_part in err.value.reason


def test_host_map_exact_wildcard_default() -> None:
    hosts = parse(
        "syncer/gray/web/hosts",
        {
            "hosts": {"API.example.com": {"service": "web", "subset": "v2"}, "*.example.com": {"service": "web-old"}},
            "default": {"service": "web"},
        },
    )
    assert isinstance(hosts, kv.HostMap)
    assert hosts.exact == (("api.example.com", kv.Target("web", "v2")),)
    assert hosts.wildcard == ((".example.com", kv.Target("web-old")),)
    assert hosts.default == kv.Target("web")


@pytest.mark.parametrize(
    ("hosts", "field", "reason_part"),
    [
        ({"bad host": {"service": "a"}}, "hosts['bad host']", "host name"),
        ({"a.com;": {"service": "a"}}, "hosts['a.com;']", "host name"),
        ({"*.com": {"service": "a"}}, "hosts['*.com']", "two labels"),
        ({"mail.*": {"service": "a"}}, "hosts['mail.*']", "host name"),
        ({"~^a": {"service": "a"}}, "hosts['~^a']", "host name"),
        ({"A.com": {"service": "a"}, "a.com": {"service": "b"}}, "hosts['a.com']", "listed twice"),
        ({"a.com": {"service": "$x"}}, "hosts['a.com'].service", "letters, digits"),
    ],
)
def test_bad_host_maps(hosts: dict[str, Any], field: str, reason_part: str) -> None:
    with pytest.raises(kv.KVInvalid) as err:
        parse("syncer/gray/web/hosts", {"hosts": hosts})
    assert (err.value.field, reason_part in err.value.reason) == (field, True), err.value


def test_override_header_cookie_and_variables() -> None:
    override = parse(
        "syncer/gray/web/override",
        {
            "header": {"name": "X-Canary"},
            "cookie": {"name": "canary_v2"},
            "target": {"service": "web", "subset": "canary"},
            "primary": {"service": "web", "subset": "stable"},
        },
    )
    assert isinstance(override, kv.Override)
    assert override.header_var == "http_x_canary"
    assert override.cookie_var == "cookie_canary_v2"
    assert override.primary == kv.Target("web", "stable")


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"target": {"service": "web"}}, "header"),
        ({"header": {"name": "X_Canary"}, "target": {"service": "web"}}, "header.name"),
        ({"header": {"name": "X-C$"}, "target": {"service": "web"}}, "header.name"),
        ({"cookie": {"name": "a-b"}, "target": {"service": "web"}}, "cookie.name"),
        ({"cookie": {"name": "ok"}}, "target"),
        ({"cookie": {"name": "ok"}, "target": {"service": "web"}, "primary": {}}, "primary.service"),
    ],
)
def test_bad_overrides(value: Any, field: str) -> None:
    with pytest.raises(kv.KVInvalid) as err:
        parse("syncer/gray/web/override", value)
    assert err.value.field == field
