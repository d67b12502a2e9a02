"""Consul health answers → validated ``Server`` values, and the reasons for every refusal.

Nothing here trusts Consul, but only what reaches nginx is held to nginx's rules: the
address, the port, the weight and the documented ``nginx_*`` Meta keys. One of those
that is invalid or could be nginx syntax rejects that one instance (the rest of the
service is kept); the caller logs each ``Rejection``. Other tags and Meta ride along as
plain data, whatever they hold (Traefik rules, URLs, JSON, empty strings, any script):
a template that prints one is checked where it prints it (``syncer.sinks.render``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from syncer import validate
from syncer.model import Server

# Service.Meta keys that carry nginx server parameters (documented in the README).
META_MAX_FAILS = "nginx_max_fails"
META_FAIL_TIMEOUT = "nginx_fail_timeout"
META_MAX_CONNS = "nginx_max_conns"
META_BACKUP = "nginx_backup"
META_DOWN = "nginx_down"

PASSING, WARNING, CRITICAL = "passing", "warning", "critical"
T = TypeVar("T")


class AnswerInvalid(ValueError):
    """The answer as a whole is not what Consul sends; nothing of it is used."""


@dataclass(frozen=True)
class Rejection:
    service: str
    instance: str
    field: str
    value: object
    reason: str

    def __str__(self) -> str:
        return f"{self.service}/{self.instance}: {self.field} {self.value!r} {self.reason}"

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        """Hashable identity (``value`` may be any JSON), for "already logged" memories."""
        return (self.service, self.instance, self.field, repr(self.value)[:200], self.reason)


class RejectionMemo:
    """Remembers which rejections were already reported, per service.

    A rejected instance stays rejected across many answers (every change to its
    neighbours brings it back): it is worth one log line when it appears, not one per
    answer. ``fresh`` returns the rejections not seen in the previous call for that
    service; one that went away and comes back is fresh again.
    """

    def __init__(self) -> None:
        self._seen: dict[str, set[tuple[str, str, str, str, str]]] = {}

    def fresh(self, service: str, rejections: Sequence[Rejection]) -> tuple[Rejection, ...]:
        before = self._seen.get(service, set())
        now = {r.key for r in rejections}
        self._seen[service] = now
        return tuple(r for r in rejections if r.key not in before)

    def forget(self, service: str) -> None:
        self._seen.pop(service, None)


@dataclass(frozen=True)
class Normalized:
    servers: tuple[Server, ...]
    rejections: tuple[Rejection, ...]
    skipped_warning: int = 0  # instances in warning left out because warning is not kept


@dataclass(frozen=True)
class Rules:
    include_warning: bool = False
    allow_hostnames: bool = True  # reload mode: nginx resolves names; api mode: IPs only


def aggregate_status(checks: object) -> str:
    """The worst status among an instance's checks (node checks included), as ``?passing`` does."""
    if not isinstance(checks, list):
        raise validate.Invalid("Checks", checks, "must be a list")
    worst = PASSING
    for check in checks:
        status = check.get("Status") if isinstance(check, dict) else None
        if status == CRITICAL or status not in (PASSING, WARNING):
            return CRITICAL  # maintenance and unknown statuses count as critical
        if status == WARNING:
            worst = WARNING
    return worst


def health_entries(service: str, body: object, rules: Rules) -> Normalized:
    """Normalize a ``/v1/health/service/<name>`` answer."""
    if not isinstance(body, list):
        raise AnswerInvalid(f"health answer for {service!r} is {type(body).__name__}, not a list")
    servers: list[Server] = []
    rejections: list[Rejection] = []
    skipped = 0
    for entry in body:
        instance = _instance_id(entry)
        try:
            server = _server(service, entry, rules)
        except validate.Invalid as exc:
            rejections.append(Rejection(service, instance, exc.what, exc.value, exc.reason))
            continue
        if server is None:
            skipped += 1
        else:
            servers.append(server)
    return Normalized(tuple(servers), tuple(rejections), skipped)


def catalog_service_names(body: object, tags: Sequence[str]) -> tuple[set[str], list[Rejection]]:
    """From ``/v1/catalog/services``: the valid names carrying any of ``tags``."""
    if not isinstance(body, dict):
        raise AnswerInvalid(f"catalog services answer is {type(body).__name__}, not an object")
    names: set[str] = set()
    rejections: list[Rejection] = []
    wanted = set(tags)
    for name, service_tags in body.items():
        if not isinstance(service_tags, list) or not wanted.intersection(t for t in service_tags if isinstance(t, str)):
            continue
        try:
            names.add(validate.upstream_name(name))
        except validate.Invalid as exc:
            rejections.append(Rejection(str(name)[:80], "-", exc.what, exc.value, exc.reason))
    return names, rejections


def _instance_id(entry: object) -> str:
    if isinstance(entry, dict):
        service = entry.get("Service")
        if isinstance(service, dict):
            instance = service.get("ID")
            if isinstance(instance, str):
                return instance[:80]
    return "?"


def _mapping(what: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise validate.Invalid(what, value, "must be an object")
    return value


def _server(service: str, entry: object, rules: Rules) -> Server | None:
    entry = _mapping("entry", entry)
    node = _mapping("Node", entry.get("Node"))
    svc = _mapping("Service", entry.get("Service"))
    status = aggregate_status(entry.get("Checks", []))
    if status == CRITICAL:
        raise validate.Invalid("Checks", status, "instance is not healthy")
    if status == WARNING and not rules.include_warning:
        return None

    name = svc.get("Service")
    if name != service:
        raise validate.Invalid("Service.Service", name, f"does not match the watched service {service!r}")
    instance_id = _text("Service.ID", svc.get("ID") or name)
    raw_address = svc.get("Address") or node.get("Address")
    address = validate.address(raw_address, allow_hostname=rules.allow_hostnames)
    port = validate.port(svc.get("Port"))

    weights = svc.get("Weights") or {"Passing": 1, "Warning": 1}
    weights = _mapping("Service.Weights", weights)
    weight_key = "Warning" if status == WARNING else "Passing"
    raw_weight = weights.get(weight_key, 1)
    if status == WARNING and raw_weight == 0:
        return None  # Consul's way of saying "no traffic while warning"
    weight = validate.weight(raw_weight, f"Service.Weights.{weight_key}")

    # Tags and Meta ride along as data: nginx never sees them unless a template prints
    # one, and the renderer checks what is printed. Only their JSON shape is checked.
    tags = svc.get("Tags") or []
    if not isinstance(tags, list):
        raise validate.Invalid("Service.Tags", tags, "must be a list")
    data_tags = tuple(_text("Service.Tags[]", tag) for tag in tags)
    meta = _mapping("Service.Meta", svc.get("Meta") or {})
    data_meta = tuple(sorted((key, _text(f"Service.Meta.{key}", value)) for key, value in meta.items()))
    max_fails = _optional(meta, META_MAX_FAILS, lambda v: validate.bounded_int(_k(META_MAX_FAILS), v, 0, 1000))
    fail_timeout = _optional(meta, META_FAIL_TIMEOUT, lambda v: validate.duration_seconds(_k(META_FAIL_TIMEOUT), v))
    max_conns = _optional(meta, META_MAX_CONNS, lambda v: validate.bounded_int(_k(META_MAX_CONNS), v, 0, 1_000_000))
    backup = _optional(meta, META_BACKUP, lambda v: validate.boolean(_k(META_BACKUP), v)) or False
    down = _optional(meta, META_DOWN, lambda v: validate.boolean(_k(META_DOWN), v)) or False
    return Server(
        address=address,
        port=port,
        weight=weight,
        max_fails=max_fails,
        fail_timeout=fail_timeout,
        max_conns=max_conns or None,
        backup=backup,
        down=down,
        instance_id=instance_id,
        tags=data_tags,
        meta=data_meta,
        # Only read by service-resolver subset filters (never rendered): keep string pairs.
        node=str(node.get("Node") or ""),
        node_meta=_string_pairs(node.get("Meta")),
        status=status,
    )


def _string_pairs(value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        return ()
    return tuple(sorted((k, v) for k, v in value.items() if isinstance(k, str) and isinstance(v, str)))


def _text(what: str, value: object) -> str:
    """A string, as Consul always sends for IDs, tags and Meta values; any content."""
    if not isinstance(value, str):
        raise validate.Invalid(what, value, "must be a string")
    return value


def _k(key: str) -> str:
    return f"Service.Meta.{key}"


def _optional(meta: Mapping[str, Any], key: str, parse: Callable[[object], T]) -> T | None:
    return parse(meta[key]) if key in meta else None
