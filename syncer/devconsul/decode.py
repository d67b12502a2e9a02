"""Request bodies decoded the way Consul's Go structs accept them.

Go's encoding/json matches field names case-insensitively and Consul adds snake_case
aliases (``tagged_addresses``, ``enable_tag_override``, ``service_id``,
``deregister_critical_service_after`` ...), which is why py-consul can send lower-case
keys. Here a key matches a field when both agree once underscores are dropped and case
is folded. Type errors are worded like Go's ``json: cannot unmarshal ...``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from syncer.devconsul.blocking import parse_go_duration
from syncer.devconsul.encoding import DecodeError

VALID_STATUSES = ("passing", "warning", "critical")
# ipaddr.IsAny: the "any" addresses Consul refuses as a service address.
ANY_ADDRESSES = frozenset({"0.0.0.0", "::", "[::]"})  # noqa: S104 - compared against, never bound


def _norm(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


class Fields:
    """Case- and underscore-insensitive access to a decoded JSON object."""

    def __init__(self, raw: Any, struct: str) -> None:
        if not isinstance(raw, dict):
            raise DecodeError(f"json: cannot unmarshal {_json_type(raw)} into Go value of type structs.{struct}")
        self.struct = struct
        self._by_norm: dict[str, Any] = {}
        for key, value in raw.items():
            self._by_norm.setdefault(_norm(key), value)

    def get(self, *names: str) -> Any:
        for name in names:
            value = self._by_norm.get(_norm(name))
            if value is not None:
                return value
        return None

    def _bad(self, value: Any, name: str, go_type: str) -> DecodeError:
        return DecodeError(
            f"json: cannot unmarshal {_json_type(value)} into Go struct field {self.struct}.{name} of type {go_type}"
        )

    def string(self, *names: str) -> str:
        value = self.get(*names)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self._bad(value, names[0], "string")
        return value

    def integer(self, *names: str) -> int:
        value = self.get(*names)
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise self._bad(value, names[0], "int")
        return int(value)

    def boolean(self, *names: str) -> bool:
        value = self.get(*names)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self._bad(value, names[0], "bool")
        return value

    def strings(self, *names: str) -> list[str] | None:
        value = self.get(*names)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._bad(value, names[0], "[]string")
        return list(value)

    def string_map(self, *names: str) -> dict[str, str] | None:
        value = self.get(*names)
        if value is None:
            return None
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise self._bad(value, names[0], "map[string]string")
        return dict(value)

    def duration(self, *names: str) -> float:
        """A Go duration string or a number of nanoseconds, in seconds."""
        value = self.get(*names)
        if value is None:
            return 0.0
        if isinstance(value, bool):
            raise self._bad(value, names[0], "time.Duration")
        if isinstance(value, (int, float)):
            return float(value) / 1e9
        if not isinstance(value, str):
            raise self._bad(value, names[0], "time.Duration")
        try:
            return parse_go_duration(value)
        except ValueError as exc:
            raise DecodeError(str(exc)) from None


@dataclass
class CheckDef:
    """structs.CheckType / CheckDefinition: what a check registration asks for."""

    check_id: str = ""
    name: str = ""
    notes: str = ""
    status: str = ""
    service_id: str = ""
    ttl: float = 0.0
    interval: float = 0.0
    timeout: float = 0.0
    http: str = ""
    method: str = ""
    header: dict[str, list[str]] = field(default_factory=dict)
    body: str = ""
    tls_skip_verify: bool = False
    tcp: str = ""
    other_kind: str = ""  # script, docker, grpc ... accepted but never run
    deregister_after: float = 0.0

    @property
    def kind(self) -> str:
        if self.ttl > 0:
            return "ttl"
        if self.http:
            return "http"
        if self.tcp:
            return "tcp"
        return self.other_kind

    def empty(self) -> bool:
        """CheckType.Empty: nothing at all was given (a bare ``"Check": {}`` is ignored)."""
        return self == CheckDef()

    def validate(self) -> None:
        """CheckType.Validate, same messages."""
        interval_check = self.kind in ("http", "tcp", "udp", "script", "docker", "grpc", "h2ping", "os_service")
        if self.interval > 0 and self.ttl > 0:
            raise ValueError("Interval and TTL cannot both be specified")
        if interval_check and self.interval <= 0:
            raise ValueError("Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks")
        if not interval_check and self.kind != "alias" and self.ttl <= 0:
            raise ValueError("TTL must be > 0 for TTL checks")


_OTHER_KINDS = (
    ("ScriptArgs", "script"), ("Args", "script"), ("DockerContainerID", "docker"), ("GRPC", "grpc"),
    ("UDP", "udp"), ("H2PING", "h2ping"), ("OSService", "os_service"), ("AliasService", "alias"),
    ("AliasNode", "alias"),
)  # fmt: skip


def parse_check(raw: Any, struct: str = "CheckType") -> CheckDef:
    f = Fields(raw, struct)
    header = f.get("Header")
    if header is not None and not (isinstance(header, dict) and all(isinstance(v, list) for v in header.values())):
        raise f._bad(header, "Header", "map[string][]string")
    other = next((kind for key, kind in _OTHER_KINDS if f.get(key) is not None), "")
    return CheckDef(
        check_id=f.string("CheckID", "ID"),
        name=f.string("Name"),
        notes=f.string("Notes"),
        status=f.string("Status"),
        service_id=f.string("ServiceID"),
        ttl=f.duration("TTL"),
        interval=f.duration("Interval"),
        timeout=f.duration("Timeout"),
        http=f.string("HTTP"),
        method=f.string("Method"),
        header={k: [str(x) for x in v] for k, v in (header or {}).items()},
        body=f.string("Body"),
        tls_skip_verify=f.boolean("TLSSkipVerify"),
        tcp=f.string("TCP"),
        other_kind=other,
        deregister_after=f.duration("DeregisterCriticalServiceAfter"),
    )


@dataclass
class ServiceDef:
    """structs.ServiceDefinition as /v1/agent/service/register reads it."""

    name: str
    id: str
    tags: list[str] | None
    address: str
    tagged_addresses: dict[str, dict[str, Any]]
    meta: dict[str, str] | None
    port: int
    socket_path: str
    weights: dict[str, int] | None
    enable_tag_override: bool
    kind: str
    proxy: dict[str, Any]
    connect: dict[str, Any]
    checks: list[CheckDef]


def tagged_addresses(f: Fields) -> dict[str, dict[str, Any]]:
    raw = f.get("TaggedAddresses")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise f._bad(raw, "TaggedAddresses", "map[string]structs.ServiceAddress")
    out = {}
    for key, value in raw.items():
        entry = Fields(value, "ServiceAddress")
        out[key] = {"Address": entry.string("Address"), "Port": entry.integer("Port")}
    return out


def parse_service(raw: Any) -> ServiceDef:
    f = Fields(raw, "ServiceDefinition")
    weights_raw = f.get("Weights")
    weights = None
    if weights_raw is not None:
        w = Fields(weights_raw, "Weights")
        weights = {"Passing": w.integer("Passing"), "Warning": w.integer("Warning")}
    checks: list[CheckDef] = []
    single = f.get("Check")
    if single is not None:
        check = parse_check(single)
        if not check.empty():
            checks.append(check)
    many = f.get("Checks")
    if many is not None:
        if not isinstance(many, list):
            raise f._bad(many, "Checks", "structs.CheckTypes")
        checks.extend(parse_check(item) for item in many)
    proxy = f.get("Proxy")
    connect = f.get("Connect")
    name = f.string("Name")
    return ServiceDef(
        name=name,
        id=f.string("ID") or name,
        tags=f.strings("Tags"),
        address=f.string("Address"),
        tagged_addresses=tagged_addresses(f),
        meta=f.string_map("Meta"),
        port=f.integer("Port"),
        socket_path=f.string("SocketPath"),
        weights=weights,
        enable_tag_override=f.boolean("EnableTagOverride"),
        kind=f.string("Kind"),
        proxy=dict(proxy) if isinstance(proxy, dict) else {},
        connect=dict(connect) if isinstance(connect, dict) else {},
        checks=checks,
    )
