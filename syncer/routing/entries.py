"""Consul's discovery-chain config entries as validated, frozen values.

Two layers of checks, both on untrusted JSON:

* ``consul_check`` - what Consul itself refuses on ``PUT /v1/config`` (worded as
  agent/structs/config_entry_discoverychain.go words it). dev-consul answers these.
* ``parse_entry`` - the same, then what syncer needs before a value may reach nginx:
  names, header names, values, paths and regexes that could inject syntax, would not
  compile in PCRE, or are longer than the caps below. Each refusal names the kind, the
  entry, the field and the reason.

Fields nginx cannot honour (peering, sameness groups, other datacenters, namespaces,
Envoy-only retry conditions, load-balancer policies, ...) are kept out of the model and
reported in ``Entry.ignored`` so the caller logs them once per entry.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from syncer.filterexpr import Field, Filter, FilterError, parse
from syncer.routing import regex
from syncer.routing.names import SUBSET_NAME

DEFAULTS, RESOLVER, SPLITTER, ROUTER = "service-defaults", "service-resolver", "service-splitter", "service-router"
KINDS = (DEFAULTS, RESOLVER, SPLITTER, ROUTER)
HTTP_PROTOCOLS = ("http", "http2", "grpc")
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE")
RETRY_CONDITIONS = (
    "5xx", "gateway-error", "reset", "connect-failure", "envoy-ratelimited", "retriable-4xx",
    "refused-stream", "cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
)  # fmt: skip
# What nginx's proxy_next_upstream can express of Envoy's retry conditions.
NGINX_RETRY_ON = {
    "5xx": ("http_500", "http_502", "http_503", "http_504"),
    "gateway-error": ("http_502", "http_503", "http_504"),
    "connect-failure": ("error", "timeout"),
    "reset": ("error",),
}
NGINX_RETRY_STATUSES = (403, 404, 429, 500, 502, 503, 504)

STICKY_META = "syncer-sticky"  # splitter Meta key: "cookie:<name>", "header:<name>" or "client-address"

MAX_ROUTES = 256
MAX_SPLITS = 64
MAX_SUBSETS = 64
MAX_PATH = 1024
MAX_VALUE = 1024
MAX_HEADERS = 32
HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,64}$")
QUERY_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
COOKIE_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
# Printable ASCII; '$' would be read as an nginx variable in the values nginx prints.
SAFE_VALUE = re.compile(r"^[\x20-\x23\x25-\x7e]*$")
SAFE_PATH = re.compile(r"^/[\x21-\x23\x25-\x7e]*$")
PATH_WHAT = "a path (starting with '/', printable ASCII, no '$' or space)"


def _q(value: object) -> str:
    """Go's %q: a double-quoted string."""
    return json.dumps(str(value))


_S, _M = Field("string"), Field("map")
# What a subset Filter may select: the parts of a health entry syncer keeps per instance.
HEALTH_SELECTORS = Field(
    "struct",
    {
        "Node": Field("struct", {"Node": _S, "Address": _S, "Meta": _M}),
        "Service": Field(
            "struct",
            {"ID": _S, "Service": _S, "Tags": Field("strings"), "Meta": _M, "Port": Field("int"), "Address": _S},
        ),
    },
)


class EntryError(ValueError):
    """An entry syncer refuses; ``str()`` is the log line's reason."""

    def __init__(self, kind: str, name: str, where: str, reason: str) -> None:
        self.kind, self.name, self.where, self.reason = kind, name, where, reason
        super().__init__(f"{kind} {_q(name)}: {where}: {reason}" if where else f"{kind} {_q(name)}: {reason}")


class ConsulRefusal(ValueError):
    """What Consul answers with a 500 on PUT /v1/config (the text is Consul's)."""


# --- the model ------------------------------------------------------------------------


@dataclass(frozen=True)
class HeaderMatch:
    name: str
    present: bool = False
    exact: str = ""
    prefix: str = ""
    suffix: str = ""
    regex: str = ""
    invert: bool = False


@dataclass(frozen=True)
class QueryMatch:
    name: str
    present: bool = False
    exact: str = ""
    regex: str = ""


@dataclass(frozen=True)
class HTTPMatch:
    path_exact: str = ""
    path_prefix: str = ""
    path_regex: str = ""
    headers: tuple[HeaderMatch, ...] = ()
    query: tuple[QueryMatch, ...] = ()
    methods: tuple[str, ...] = ()


@dataclass(frozen=True)
class HeaderMods:
    add: tuple[tuple[str, str], ...] = ()
    set: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.add or self.set or self.remove)


@dataclass(frozen=True)
class Destination:
    service: str = ""
    subset: str = ""
    prefix_rewrite: str = ""
    request_timeout: float = 0.0  # seconds; 0: nginx's own
    num_retries: int = 0
    retry_on_connect_failure: bool = False
    retry_on: tuple[str, ...] = ()
    retry_on_status_codes: tuple[int, ...] = ()
    request_headers: HeaderMods = HeaderMods()
    response_headers: HeaderMods = HeaderMods()


@dataclass(frozen=True)
class Route:
    match: HTTPMatch
    destination: Destination


@dataclass(frozen=True)
class Split:
    units: int  # weight in 1/10000 (0.01 %)
    service: str = ""
    subset: str = ""
    request_headers: HeaderMods = HeaderMods()
    response_headers: HeaderMods = HeaderMods()


@dataclass(frozen=True)
class Sticky:
    source: str  # "cookie" | "header" | "client-address"
    name: str = ""


@dataclass(frozen=True)
class Subset:
    filter: str
    only_passing: bool = False


@dataclass(frozen=True)
class Target:
    service: str = ""
    subset: str = ""


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    ignored: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class ServiceDefaults(Entry):
    protocol: str = "tcp"


@dataclass(frozen=True)
class Router(Entry):
    routes: tuple[Route, ...] = ()


@dataclass(frozen=True)
class Splitter(Entry):
    splits: tuple[Split, ...] = ()
    sticky: Sticky | None = None


@dataclass(frozen=True)
class Resolver(Entry):
    default_subset: str = ""
    subsets: Mapping[str, Subset] = field(default_factory=dict)
    redirect: Target | None = None
    failover: Mapping[str, Target] = field(default_factory=dict)


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds for a Go duration such as ``"15s"``, ``"1m30s"``, ``"250ms"``."""
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None:
            raise ValueError(f'time: invalid duration "{text[:40]}"')
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos == 0:
        raise ValueError(f'time: invalid duration "{text[:40]}"')
    return total


# --- field access ---------------------------------------------------------------------

_ALIASES = {
    "path_exact": "PathExact", "path_prefix": "PathPrefix", "path_regex": "PathRegex",
    "query_param": "QueryParam", "service_subset": "ServiceSubset", "prefix_rewrite": "PrefixRewrite",
    "request_timeout": "RequestTimeout", "idle_timeout": "IdleTimeout", "num_retries": "NumRetries",
    "retry_on_connect_failure": "RetryOnConnectFailure", "retry_on": "RetryOn",
    "retry_on_status_codes": "RetryOnStatusCodes", "request_headers": "RequestHeaders",
    "response_headers": "ResponseHeaders", "default_subset": "DefaultSubset", "only_passing": "OnlyPassing",
    "connect_timeout": "ConnectTimeout", "load_balancer": "LoadBalancer", "sameness_group": "SamenessGroup",
}  # fmt: skip


def canonical(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Consul decodes field names case-insensitively and accepts snake_case aliases."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = _ALIASES.get(key, key)
        name = name[:1].upper() + name[1:] if name else name
        if isinstance(value, dict) and name not in ("Meta", "Subsets", "Failover", "Add", "Set"):
            out[name] = canonical(value)
        elif isinstance(value, dict):
            out[name] = {k: canonical(v) if isinstance(v, dict) else v for k, v in value.items()}
        elif isinstance(value, list):
            out[name] = [canonical(v) if isinstance(v, dict) else v for v in value]
        else:
            out[name] = value
    return out


class _Fields:
    """Typed reads from one JSON object; a wrong type raises EntryError naming the field."""

    def __init__(self, kind: str, name: str, obj: object, where: str) -> None:
        self.kind, self.name, self.where = kind, name, where
        if obj is None:
            obj = {}
        if not isinstance(obj, dict):
            raise EntryError(kind, name, where or "entry", "must be an object")
        self.obj: dict[str, Any] = obj

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, reason: str) -> EntryError:
        return EntryError(self.kind, self.name, self.path(key), reason)

    def text(self, key: str) -> str:
        value = self.obj.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, not {type(value).__name__}")
        return value

    def flag(self, key: str) -> bool:
        value = self.obj.get(key)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self.fail(key, "must be true or false")
        return value

    def num(self, key: str) -> float:
        value = self.obj.get(key)
        if value is None:
            return 0.0
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(key, "must be a number")
        return float(value)

    def seq(self, key: str) -> list[Any]:
        value = self.obj.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(key, "must be a list")
        return value

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.obj.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, "must be an object")
        return value

    def sub(self, key: str, index: int | None = None) -> _Fields:
        obj = self.obj.get(key) if index is None else self.seq(key)[index]
        where = self.path(key) if index is None else f"{self.path(key)}[{index}]"
        return _Fields(self.kind, self.name, obj, where)

    def duration(self, key: str) -> float:
        raw = self.text(key)
        if not raw:
            return 0.0
        try:
            return parse_duration(raw)
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None


# --- parsing --------------------------------------------------------------------------


def parse_entry(raw: object, *, strict: bool = True) -> Entry:
    """One config entry from Consul's JSON. ``strict=False`` applies Consul's own checks only."""
    if not isinstance(raw, dict):
        raise EntryError("?", "?", "", "a config entry must be a JSON object")
    body = canonical(raw)
    kind = body.get("Kind")
    name = body.get("Name")
    if not isinstance(kind, str) or kind not in KINDS:
        raise EntryError(str(kind)[:40], str(name)[:80], "Kind", f"must be one of {', '.join(KINDS)}")
    if not isinstance(name, str) or not name:
        raise ConsulRefusal("Name is required")
    if strict and not SERVICE_NAME.match(name):
        raise EntryError(kind, name[:80], "Name", "must be a service name (letters, digits, '_', '-'; at most 128)")
    f = _Fields(kind, name, body, "")
    ignored: list[str] = []
    _meta(f)
    for key in ("Namespace", "Partition"):
        if f.text(key) not in ("", "default"):
            ignored.append(f"{key} {_q(f.text(key))} (one namespace and partition only)")
    if kind == DEFAULTS:
        return ServiceDefaults(kind, name, tuple(ignored), protocol=(f.text("Protocol") or "tcp").lower())
    if kind == ROUTER:
        return _router(f, ignored, strict)
    if kind == SPLITTER:
        return _splitter(f, ignored, strict)
    return _resolver(f, ignored, strict)


def _meta(f: _Fields) -> None:
    meta = f.mapping("Meta")
    if len(meta) > 64:
        raise ConsulRefusal("Meta exceeds maximum element count 64")
    for key, value in meta.items():
        if len(key) > 128:
            raise ConsulRefusal(f"Meta key too long (limit: 128 characters): {_q(key)}")
        if not isinstance(value, str):
            raise f.fail(f"Meta.{key}", "must be a string")
        if len(value) > 512:
            raise ConsulRefusal(f"Meta value for key {_q(key)} too long (limit: 512 characters)")


def _safe(f: _Fields, key: str, value: str, pattern: re.Pattern[str], limit: int, what: str) -> str:
    if len(value) > limit:
        raise f.fail(key, f"longer than {limit} characters")
    if not pattern.match(value):
        raise f.fail(key, f"{_q(value[:80])} is not {what}")
    return value


def _regex(f: _Fields, key: str, value: str, strict: bool) -> str:
    if strict and value:
        try:
            regex.check(value)
        except regex.RegexError as exc:
            raise f.fail(key, f"regex {_q(value[:80])} refused: {exc}") from None
    return value


def _value(f: _Fields, key: str, strict: bool) -> str:
    value = f.text(key)
    if strict and value:
        _safe(f, key, value, SAFE_VALUE, MAX_VALUE, "printable ASCII without '$'")
    return value


def _header_mods(f: _Fields, strict: bool) -> HeaderMods:
    if not f.obj:
        return HeaderMods()
    pairs: dict[str, tuple[tuple[str, str], ...]] = {}
    for op in ("Add", "Set"):
        items = []
        for hname, hvalue in sorted(f.mapping(op).items()):
            where = f"{op}.{hname}"
            if not isinstance(hvalue, str):
                raise f.fail(where, "must be a string")
            if strict:
                _safe(f, where, hname, HEADER_NAME, 64, "a header name (letters, digits, '-')")
                _safe(f, where, hvalue, SAFE_VALUE, MAX_VALUE, "printable ASCII without '$'")
            items.append((hname, hvalue))
        pairs[op] = tuple(items)
    removed = []
    for i, hname in enumerate(f.seq("Remove")):
        if not isinstance(hname, str):
            raise f.fail(f"Remove[{i}]", "must be a string")
        if strict:
            _safe(f, f"Remove[{i}]", hname, HEADER_NAME, 64, "a header name (letters, digits, '-')")
        removed.append(hname)
    mods = HeaderMods(pairs["Add"], pairs["Set"], tuple(removed))
    if strict and len(mods.add) + len(mods.set) + len(mods.remove) > MAX_HEADERS:
        raise f.fail("", f"more than {MAX_HEADERS} header changes")
    return mods


def _router(f: _Fields, ignored: list[str], strict: bool) -> Router:
    routes = f.seq("Routes")
    if strict and len(routes) > MAX_ROUTES:
        raise f.fail("Routes", f"more than {MAX_ROUTES} routes")
    out: list[Route] = []
    for i in range(len(routes)):
        r = f.sub("Routes", i)
        http = r.sub("Match").sub("HTTP")
        match = _http_match(http, i, strict)
        d = r.sub("Destination")
        eligible = bool(match.path_exact or match.path_prefix)
        rewrite = d.text("PrefixRewrite")
        if rewrite and not eligible:
            raise ConsulRefusal(
                f"Route[{i}] cannot make use of PrefixRewrite without configuring either PathExact or PathPrefix"
            )
        retry_on = []
        for j, cond in enumerate(d.seq("RetryOn")):
            if cond not in RETRY_CONDITIONS:
                raise ConsulRefusal(f"Route[{i}] contains an invalid retry condition: {_q(cond)}")
            if cond in NGINX_RETRY_ON:
                retry_on.append(cond)
            else:
                ignored.append(f"Routes[{i}].Destination.RetryOn[{j}] {_q(cond)} (nginx cannot retry on it)")
        codes = []
        for j, code in enumerate(d.seq("RetryOnStatusCodes")):
            if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
                raise d.fail(f"RetryOnStatusCodes[{j}]", "must be an HTTP status code")
            if code in NGINX_RETRY_STATUSES:
                codes.append(code)
            else:
                ignored.append(
                    f"Routes[{i}].Destination.RetryOnStatusCodes[{j}] {code} (proxy_next_upstream has no http_{code})"
                )
        retries = d.num("NumRetries")
        if retries < 0 or retries != int(retries) or retries > 2**32 - 1:
            raise d.fail("NumRetries", "must be a non-negative integer")
        for key in ("Namespace", "Partition"):
            if d.text(key) not in ("", "default"):
                ignored.append(f"Routes[{i}].Destination.{key} (one namespace and partition only)")
        if d.text("IdleTimeout"):
            ignored.append(f"Routes[{i}].Destination.IdleTimeout")
        service = d.text("Service")
        subset = d.text("ServiceSubset")
        if strict and service:
            _safe(d, "Service", service, SERVICE_NAME, 128, "a service name")
        if strict and subset and not SUBSET_NAME.match(subset):
            raise d.fail("ServiceSubset", f"{_q(subset[:80])} is not a DNS label")
        if strict and rewrite:
            _safe(
                d, "PrefixRewrite", rewrite, SAFE_PATH, MAX_PATH, "a path (starting with '/', printable ASCII, no '$')"
            )
        timeout = d.duration("RequestTimeout")
        if timeout < 0:
            raise d.fail("RequestTimeout", "must not be negative")
        out.append(
            Route(
                match,
                Destination(
                    service=service,
                    subset=subset,
                    prefix_rewrite=rewrite,
                    request_timeout=timeout,
                    num_retries=int(retries),
                    retry_on_connect_failure=d.flag("RetryOnConnectFailure"),
                    retry_on=tuple(retry_on),
                    retry_on_status_codes=tuple(codes),
                    request_headers=_header_mods(d.sub("RequestHeaders"), strict),
                    response_headers=_header_mods(d.sub("ResponseHeaders"), strict),
                ),
            )
        )
    return Router(ROUTER, f.name, tuple(ignored), routes=tuple(out))


def _http_match(http: _Fields, i: int, strict: bool) -> HTTPMatch:
    exact, prefix, rx = http.text("PathExact"), http.text("PathPrefix"), http.text("PathRegex")
    if exact and not exact.startswith("/"):
        raise ConsulRefusal(f"Route[{i}] PathExact doesn't start with '/': {_q(exact)}")
    if prefix and not prefix.startswith("/"):
        raise ConsulRefusal(f"Route[{i}] PathPrefix doesn't start with '/': {_q(prefix)}")
    if sum(1 for p in (exact, prefix, rx) if p) > 1:
        raise ConsulRefusal(f"Route[{i}] should only contain at most one of PathExact, PathPrefix, or PathRegex")
    if strict:
        for key, value in (("PathExact", exact), ("PathPrefix", prefix)):
            if value:
                _safe(http, key, value, SAFE_PATH, MAX_PATH, PATH_WHAT)
    _regex(http, "PathRegex", rx, strict)
    headers = []
    raw_headers = http.seq("Header")
    if strict and len(raw_headers) > MAX_HEADERS:
        raise http.fail("Header", f"more than {MAX_HEADERS} header conditions")
    for j in range(len(raw_headers)):
        h = http.sub("Header", j)
        hname = h.text("Name")
        if not hname:
            raise ConsulRefusal(f"Route[{i}] Header[{j}] missing required Name field")
        parts = [h.flag("Present"), *(bool(h.text(k)) for k in ("Exact", "Regex", "Prefix", "Suffix"))]
        if sum(parts) != 1:
            raise ConsulRefusal(
                f"Route[{i}] Header[{j}] should only contain one of Present, Exact, Prefix, Suffix, or Regex"
            )
        if strict:
            _safe(h, "Name", hname, HEADER_NAME, 64, "a header name nginx can read (letters, digits, '-')")
        headers.append(
            HeaderMatch(
                hname, h.flag("Present"), _value(h, "Exact", strict), _value(h, "Prefix", strict),
                _value(h, "Suffix", strict), _regex(h, "Regex", h.text("Regex"), strict), h.flag("Invert"),
            )
        )  # fmt: skip
    query = []
    raw_query = http.seq("QueryParam")
    if strict and len(raw_query) > MAX_HEADERS:
        raise http.fail("QueryParam", f"more than {MAX_HEADERS} query conditions")
    for j in range(len(raw_query)):
        q = http.sub("QueryParam", j)
        qname = q.text("Name")
        if not qname:
            raise ConsulRefusal(f"Route[{i}] QueryParam[{j}] missing required Name field")
        if sum([q.flag("Present"), bool(q.text("Exact")), bool(q.text("Regex"))]) != 1:
            raise ConsulRefusal(f"Route[{i}] QueryParam[{j}] should only contain one of Present, Exact, or Regex")
        if strict:
            _safe(q, "Name", qname, QUERY_NAME, 64, "a query parameter name nginx can read (letters, digits, '_')")
        query.append(
            QueryMatch(
                qname, q.flag("Present"), _value(q, "Exact", strict), _regex(q, "Regex", q.text("Regex"), strict)
            )
        )
    methods: list[str] = []
    for j, method in enumerate(http.seq("Methods")):
        if not isinstance(method, str):
            raise http.fail(f"Methods[{j}]", "must be a string")
        upper = method.upper()
        if upper not in METHODS:
            raise ConsulRefusal(f"Route[{i}] Methods contains an invalid method {_q(upper)}")
        if upper in methods:
            raise ConsulRefusal(f"Route[{i}] Methods contains {_q(upper)} more than once")
        methods.append(upper)
    return HTTPMatch(exact, prefix, rx, tuple(headers), tuple(query), tuple(methods))


def scale_weight(weight: float) -> int:
    """Consul's scaleWeight: a percentage as whole 1/10000 units (float32 arithmetic)."""
    as_float32: float = struct.unpack("f", struct.pack("f", weight))[0]
    product: float = struct.unpack("f", struct.pack("f", as_float32 * 100.0))[0]
    return math.floor(product + 0.5) if product >= 0 else -math.floor(-product + 0.5)


def _splitter(f: _Fields, ignored: list[str], strict: bool) -> Splitter:
    raw = f.seq("Splits")
    if not raw:
        raise ConsulRefusal("no splits configured")
    if strict and len(raw) > MAX_SPLITS:
        raise f.fail("Splits", f"more than {MAX_SPLITS} splits")
    splits: list[Split] = []
    seen: set[tuple[str, str]] = set()
    for i in range(len(raw)):
        s = f.sub("Splits", i)
        service, subset = s.text("Service"), s.text("ServiceSubset")
        key = (service or f.name, subset)
        if key in seen:
            raise ConsulRefusal(
                f'split destination occurs more than once: service="{key[0]}", subset="{subset}", '
                'namespace="default", partition="default"'
            )
        seen.add(key)
        weight = s.num("Weight")
        units = scale_weight(weight)
        if units < 0:
            raise s.fail("Weight", "must not be negative")
        if strict and service:
            _safe(s, "Service", service, SERVICE_NAME, 128, "a service name")
        if strict and subset and not SUBSET_NAME.match(subset):
            raise s.fail("ServiceSubset", f"{_q(subset[:80])} is not a DNS label")
        for k in ("Namespace", "Partition"):
            if s.text(k) not in ("", "default"):
                ignored.append(f"Splits[{i}].{k} (one namespace and partition only)")
        request_mods, response_mods = (
            _header_mods(s.sub("RequestHeaders"), strict),
            _header_mods(s.sub("ResponseHeaders"), strict),
        )
        if not (request_mods.empty and response_mods.empty):
            ignored.append(f"Splits[{i}] header changes (set them on the router's Destination)")
        splits.append(Split(units, service, subset, request_mods, response_mods))
    total = sum(s.units for s in splits)
    if total != 10000:
        raise ConsulRefusal(f"the sum of all split weights must be 100, not {total / 100:f}")
    return Splitter(SPLITTER, f.name, tuple(ignored), splits=tuple(splits), sticky=_sticky(f, strict))


def _sticky(f: _Fields, strict: bool) -> Sticky | None:
    raw = f.mapping("Meta").get(STICKY_META)
    if not raw or not strict:
        return None
    where = f"Meta.{STICKY_META}"
    if raw == "client-address":
        return Sticky("client-address")
    source, _, name = str(raw).partition(":")
    if source == "cookie" and COOKIE_NAME.match(name):
        return Sticky("cookie", name)
    if source == "header" and HEADER_NAME.match(name):
        return Sticky("header", name.lower())
    raise f.fail(where, f"{_q(str(raw)[:80])} is not 'cookie:<name>', 'header:<name>' or 'client-address'")


def _resolver(f: _Fields, ignored: list[str], strict: bool) -> Resolver:
    subsets: dict[str, Subset] = {}
    raw_subsets = f.mapping("Subsets")
    if strict and len(raw_subsets) > MAX_SUBSETS:
        raise f.fail("Subsets", f"more than {MAX_SUBSETS} subsets")
    for sname in sorted(raw_subsets):
        if sname == "":
            raise ConsulRefusal("Subset defined with empty name")
        if not SUBSET_NAME.match(sname):
            raise ConsulRefusal(
                f"Subset {_q(sname)} is invalid: Service subset {_q(sname)} is invalid: must be a valid DNS label"
            )
        s = _Fields(f.kind, f.name, raw_subsets[sname], f"Subsets.{sname}")
        expression = s.text("Filter")
        if expression:
            if strict and len(expression) > MAX_VALUE:
                raise s.fail("Filter", f"longer than {MAX_VALUE} characters")
            try:
                parse(expression)
            except FilterError as exc:
                raise ConsulRefusal(f"Filter for subset {_q(sname)} is not a valid expression: {exc}") from None
            if strict:
                try:
                    Filter(expression, HEALTH_SELECTORS)
                except FilterError as exc:
                    raise s.fail("Filter", f"syncer cannot evaluate it: {exc}") from None
        subsets[sname] = Subset(expression, s.flag("OnlyPassing"))
    default = f.text("DefaultSubset")
    if default and default not in subsets:
        raise ConsulRefusal(f"DefaultSubset {_q(default)} is not a valid subset")
    redirect = None
    if f.obj.get("Redirect") is not None:
        r = f.sub("Redirect")
        if f.mapping("Failover"):
            raise ConsulRefusal("Redirect and Failover cannot both be set")
        fields = {k: r.text(k) for k in ("Service", "ServiceSubset", "Namespace", "Partition", "Datacenter", "Peer")}
        if not any(fields.values()) and not r.text("SamenessGroup"):
            raise ConsulRefusal("Redirect is empty")
        if not fields["Service"] and fields["ServiceSubset"]:
            raise ConsulRefusal("Redirect.ServiceSubset defined without Redirect.Service")
        if fields["ServiceSubset"] and fields["Service"] in ("", f.name) and fields["ServiceSubset"] not in subsets:
            raise ConsulRefusal(
                f"Redirect.ServiceSubset {_q(fields['ServiceSubset'])} is not a valid subset of {_q(f.name)}"
            )
        for k in ("Datacenter", "Peer", "SamenessGroup"):
            if r.text(k):
                ignored.append(f"Redirect.{k} (only the local datacenter's instances are watched)")
        if strict and fields["Service"]:
            _safe(r, "Service", fields["Service"], SERVICE_NAME, 128, "a service name")
        if fields["Service"] or fields["ServiceSubset"]:
            redirect = Target(fields["Service"], fields["ServiceSubset"])
    failover: dict[str, Target] = {}
    for key, value in sorted(f.mapping("Failover").items()):
        fo = _Fields(f.kind, f.name, value, f"Failover.{key}")
        prefix = f"Bad Failover[{_q(key)}]: "
        if key != "*" and key not in subsets:
            raise ConsulRefusal(prefix + "not a valid subset subset")
        service, subset = fo.text("Service"), fo.text("ServiceSubset")
        dcs, targets = fo.seq("Datacenters"), fo.seq("Targets")
        if not (service or subset or fo.text("Namespace") or dcs or targets or fo.text("SamenessGroup")):
            raise ConsulRefusal(
                prefix + "one of Service, ServiceSubset, Namespace, Targets, or Datacenters is required"
            )
        if subset and service in ("", f.name) and subset not in subsets:
            raise ConsulRefusal(f"{prefix}ServiceSubset {_q(subset)} is not a valid subset of {_q(service)}")
        for k, present in (("Datacenters", dcs), ("Targets", targets), ("SamenessGroup", fo.text("SamenessGroup"))):
            if present:
                ignored.append(f"Failover.{key}.{k} (only same-datacenter Service/ServiceSubset failover)")
        if strict and service:
            _safe(fo, "Service", service, SERVICE_NAME, 128, "a service name")
        if service or subset:
            failover[key] = Target(service, subset)
    for k in ("ConnectTimeout", "RequestTimeout"):
        f.duration(k)
        if f.text(k):
            ignored.append(f"{k} (use the nginx location's proxy_*_timeout)")
    for k in ("LoadBalancer", "PrioritizeByLocality"):
        if f.obj.get(k):
            ignored.append(f"{k} (the balancer is nginx's / syncer's own)")
    return Resolver(
        RESOLVER, f.name, tuple(ignored), default_subset=default, subsets=subsets, redirect=redirect, failover=failover
    )


def consul_check(raw: object) -> Entry:
    """Consul's own validation only (dev-consul's PUT): ConsulRefusal or EntryError on failure."""
    return parse_entry(raw, strict=False)
