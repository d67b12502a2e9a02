"""The KV layout for gray release (issue 11): keys, their JSON schema, and validation.

Everything under the prefix is untrusted input. ``parse_key`` turns one KV pair into a
validated value or raises ``KVInvalid`` naming the key, the field and the reason; the
Source keeps the last good value of a refused key (``kv_source.py``).

Layout (``<prefix>`` defaults to ``syncer/``; ``<entry>`` is the service whose traffic
nginx receives at a location)::

    <prefix>gray/<entry>/override       header / cookie overrides (always / never)
    <prefix>gray/<entry>/lists/<name>   a client-address gray list -> (service, subset)
    <prefix>gray/<entry>/hosts          Host -> (service, subset), exact, *.wildcard, default

docs/kv-layout.md has the JSON Schema of each value and curl examples.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from syncer import validate
from syncer.routing.kv_net import Net, parse_network

DEFAULT_PREFIX = "syncer/"
MAX_LIST_ENTRIES = 10_000
MAX_HOSTS = 10_000
MAX_VALUE_BYTES = 512 * 1024  # Consul's kv_max_value_size default
PRIORITY_RANGE = (0, 1_000_000)

_SUBSET = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")  # a DNS label, like Consul's subset names
_LIST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")  # nginx drops names with '_' by default
_COOKIE_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")  # must stay one nginx variable name: $cookie_<name>
_HOST_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


class KVInvalid(ValueError):
    """A refused KV value: ``str(exc)`` reads ``key <key>: field <field>: <reason>``."""

    def __init__(self, key: str, field: str, reason: str) -> None:
        self.key = key
        self.field = field
        self.reason = reason
        super().__init__(f"key {key!r}: field {field}: {reason}")


@dataclass(frozen=True, order=True)
class Target:
    """A (service, subset) pair; its pool is one upstream holding that subset's instances."""

    service: str
    subset: str | None = None

    @property
    def pool(self) -> str:
        return self.service if self.subset is None else f"{self.service}.{self.subset}"


@dataclass(frozen=True)
class Override:
    """ingress-nginx's canary-by-header / canary-by-cookie: ``always`` -> target, ``never`` -> primary.

    Without ``primary``, ``never`` skips the remaining KV stages and lets Consul's chain decide.
    """

    target: Target
    primary: Target | None
    header: str | None  # header name as written, e.g. "X-Canary"
    cookie: str | None

    @property
    def header_var(self) -> str | None:
        """The nginx variable both modes read: first header of that name, like ``$http_x_canary``."""
        return None if self.header is None else "http_" + self.header.lower().replace("-", "_")

    @property
    def cookie_var(self) -> str | None:
        return None if self.cookie is None else "cookie_" + self.cookie


@dataclass(frozen=True)
class AddressList:
    name: str
    target: Target
    priority: int  # lower first; ties by name
    networks: tuple[Net, ...]  # as given, normalized (host bits must be zero)


@dataclass(frozen=True)
class HostMap:
    """nginx ``map ... { hostnames; }`` semantics: exact, then the longest ``*.suffix``, then default."""

    exact: tuple[tuple[str, Target], ...]  # sorted by name
    wildcard: tuple[tuple[str, Target], ...]  # (".example.com", target), sorted
    default: Target | None


@dataclass(frozen=True)
class ListKey:
    entry: str
    name: str


@dataclass(frozen=True)
class OverrideKey:
    entry: str


@dataclass(frozen=True)
class HostsKey:
    entry: str


KeyKind = ListKey | OverrideKey | HostsKey


def classify(key: str, prefix: str) -> KeyKind | None:
    """Which rule a key holds; None for keys outside ``<prefix>gray/`` (other features' keys)."""
    base = prefix + "gray/"
    if not key.startswith(base):
        return None
    parts = key[len(base) :].split("/")
    if len(parts) == 1 and parts[0] == "":
        return None  # the folder key itself
    entry = parts[0]
    try:
        validate.upstream_name(entry)
    except validate.Invalid as exc:
        raise KVInvalid(key, "<entry> in the key", exc.reason) from None
    if len(parts) == 2 and parts[1] == "override":
        return OverrideKey(entry)
    if len(parts) == 2 and parts[1] == "hosts":
        return HostsKey(entry)
    if len(parts) == 2 and parts[1] in ("", "lists"):
        return None  # folder keys
    if len(parts) == 3 and parts[1] == "lists":
        if parts[2] == "":
            return None
        if not _LIST_NAME.match(parts[2]):
            raise KVInvalid(key, "<name> in the key", "must be 1-64 of letters, digits, '_', '-'")
        return ListKey(entry, parts[2])
    raise KVInvalid(key, "key", f"not part of the layout: expected {base}<entry>/override, /hosts or /lists/<name>")


def decode(key: str, raw: bytes | None) -> Mapping[str, Any]:
    if raw is None or raw == b"":
        raise KVInvalid(key, "value", "is empty; a JSON object is required")
    if len(raw) > MAX_VALUE_BYTES:
        raise KVInvalid(key, "value", f"is {len(raw)} bytes, over the {MAX_VALUE_BYTES} limit")
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise KVInvalid(key, "value", f"is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise KVInvalid(key, "value", f"must be a JSON object, not {type(value).__name__}")
    return value


def _only(key: str, obj: Mapping[str, Any], where: str, allowed: set[str]) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise KVInvalid(key, f"{where}{unknown[0]}", f"unknown field; allowed: {', '.join(sorted(allowed))}")


def target(key: str, field: str, value: object) -> Target:
    if not isinstance(value, dict):
        raise KVInvalid(key, field, 'must be an object {"service": ..., "subset": ...}')
    _only(key, value, f"{field}.", {"service", "subset"})
    try:
        service = validate.upstream_name(value.get("service"))
    except validate.Invalid as exc:
        raise KVInvalid(key, f"{field}.service", f"{value.get('service')!r} {exc.reason}") from None
    if "." in service:
        raise KVInvalid(key, f"{field}.service", f"{service!r} must not contain '.' (it separates pool and subset)")
    subset = value.get("subset")
    if subset is not None and (not isinstance(subset, str) or not _SUBSET.match(subset)):
        raise KVInvalid(key, f"{field}.subset", f"{subset!r} must be a DNS label (lowercase letters, digits, '-')")
    return Target(service, subset or None)


def _name_field(key: str, obj: Mapping[str, Any], field: str, pattern: re.Pattern[str], rule: str) -> str:
    value = obj.get("name")
    if not isinstance(value, str) or not pattern.match(value):
        raise KVInvalid(key, f"{field}.name", f"{value!r} must be {rule}")
    return value


def parse_override(key: str, obj: Mapping[str, Any]) -> Override:
    _only(key, obj, "", {"target", "primary", "header", "cookie"})
    header = cookie = None
    if obj.get("header") is not None:
        h = obj["header"]
        if not isinstance(h, dict):
            raise KVInvalid(key, "header", 'must be an object {"name": ...}')
        _only(key, h, "header.", {"name"})
        header = _name_field(key, h, "header", _HEADER_NAME, "1-64 of letters, digits, '-'")
    if obj.get("cookie") is not None:
        c = obj["cookie"]
        if not isinstance(c, dict):
            raise KVInvalid(key, "cookie", 'must be an object {"name": ...}')
        _only(key, c, "cookie.", {"name"})
        cookie = _name_field(key, c, "cookie", _COOKIE_NAME, "1-64 of letters, digits, '_'")
    if header is None and cookie is None:
        raise KVInvalid(key, "header", "an override needs a header or a cookie (or both)")
    canary = target(key, "target", obj.get("target"))
    primary = target(key, "primary", obj["primary"]) if obj.get("primary") is not None else None
    return Override(canary, primary, header, cookie)


def _network(key: str, field: str, value: object) -> Net:
    if not isinstance(value, str) or not value or len(value) > 64:
        raise KVInvalid(key, field, f"{value!r} must be an IPv4/IPv6 address or CIDR string")
    try:
        return parse_network(value)
    except ValueError as exc:
        raise KVInvalid(key, field, f"{value!r} is not an address or CIDR: {exc}") from None


def parse_list(key: str, name: str, obj: Mapping[str, Any]) -> AddressList:
    _only(key, obj, "", {"target", "priority", "addresses", "description"})
    tgt = target(key, "target", obj.get("target"))
    priority = obj.get("priority", 100)
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not (PRIORITY_RANGE[0] <= priority <= PRIORITY_RANGE[1])
    ):
        low, high = PRIORITY_RANGE
        raise KVInvalid(key, "priority", f"{priority!r} must be an integer from {low} to {high}")
    description = obj.get("description", "")
    if not isinstance(description, str) or len(description) > 512:
        raise KVInvalid(key, "description", "must be a string of at most 512 characters")
    addresses = obj.get("addresses")
    if not isinstance(addresses, list):
        raise KVInvalid(key, "addresses", "must be an array of addresses / CIDRs")
    if len(addresses) > MAX_LIST_ENTRIES:
        raise KVInvalid(key, "addresses", f"has {len(addresses)} entries, over the {MAX_LIST_ENTRIES} limit")
    networks = tuple(_network(key, f"addresses[{i}]", a) for i, a in enumerate(addresses))
    return AddressList(name, tgt, priority, networks)


def _hostname(key: str, field: str, value: str) -> str:
    name = value.lower()
    if len(name) > 253:
        raise KVInvalid(key, field, f"{value[:40]!r}... is longer than 253 characters")
    labels = name[2:].split(".") if name.startswith("*.") else name.split(".")
    if not all(_HOST_LABEL.match(label) for label in labels):
        raise KVInvalid(key, field, f"{value!r} must be a host name or '*.' followed by one (labels of a-z, 0-9, '-')")
    if name.startswith("*.") and len(labels) < 2:
        raise KVInvalid(key, field, f"{value!r}: a wildcard needs at least two labels after '*.'")
    return name


def parse_hosts(key: str, obj: Mapping[str, Any]) -> HostMap:
    _only(key, obj, "", {"hosts", "default"})
    hosts = obj.get("hosts", {})
    if not isinstance(hosts, dict):
        raise KVInvalid(key, "hosts", 'must be an object {"<host>": {"service": ..., "subset": ...}}')
    if len(hosts) > MAX_HOSTS:
        raise KVInvalid(key, "hosts", f"has {len(hosts)} names, over the {MAX_HOSTS} limit")
    exact: dict[str, Target] = {}
    wildcard: dict[str, Target] = {}
    for raw_name, raw_target in hosts.items():
        field = f"hosts[{raw_name!r}]"
        name = _hostname(key, field, raw_name)
        table = wildcard if name.startswith("*.") else exact
        stored = name[1:] if name.startswith("*.") else name
        if stored in table:
            raise KVInvalid(key, field, f"{raw_name!r} is listed twice (names are case-insensitive)")
        table[stored] = target(key, field, raw_target)
    default = target(key, "default", obj["default"]) if obj.get("default") is not None else None
    return HostMap(tuple(sorted(exact.items())), tuple(sorted(wildcard.items())), default)


_PREFIX = re.compile(r"^(?:[A-Za-z0-9_.-]+/)+$")


def check_prefix(value: object) -> str:
    """The KV prefix syncer reads (config ``[services] kv_prefix``): ``a/`` or ``a/b/``."""
    if not isinstance(value, str) or len(value) > 256 or not _PREFIX.match(value) or "/../" in f"/{value}":
        raise ValueError("must be folder names of letters, digits, '_', '.', '-', each ending in '/' (e.g. syncer/)")
    return value
