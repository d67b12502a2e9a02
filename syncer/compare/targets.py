"""Where replayed requests go: a base URL, or a Consul service (and subset) resolved
through syncer's own discovery code.

Forms accepted by ``--primary``, ``--candidate`` and ``--secondary``:

* ``http://127.0.0.1:8080`` or ``https://old.internal/api`` (a path prefix is kept);
* ``consul:web`` — every passing instance of ``web``;
* ``consul:web?filter=Service.Meta.version == "2"`` — a subset chosen by a Consul filter
  expression, sent as ``/v1/health/service/web?filter=…`` exactly as Consul resolves a
  service-resolver subset (URL-encode the expression if it holds ``&``);
* ``consul:web?tag=v2`` — shorthand for ``"v2" in Service.Tags`` (and-ed with a filter);
* ``&warning=1`` also keeps instances whose checks are in warning.

Requests are spread round-robin over the instances found. Instances are validated by
``syncer.discovery.normalize.health_entries`` like everything else read from Consul.
"""

from __future__ import annotations

import itertools
import threading
import urllib.parse
from dataclasses import dataclass, field

from syncer import validate
from syncer.config import ConsulSettings
from syncer.discovery.client import Answer, ConsulClient, ConsulError
from syncer.discovery.normalize import AnswerInvalid, Rules, health_entries
from syncer.model import Server


class TargetError(ValueError):
    """A target that cannot be used: bad syntax, Consul unreachable, no instance."""


@dataclass(frozen=True)
class ConsulTarget:
    service: str
    filter: str | None = None
    include_warning: bool = False


@dataclass
class Target:
    """A resolved target: the base URLs requests are spread over."""

    label: str
    base_urls: tuple[str, ...]
    _next: itertools.count[int] = field(default_factory=itertools.count, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def pick(self) -> str:
        with self._lock:
            index = next(self._next)
        return self.base_urls[index % len(self.base_urls)]


def _base_url(spec: str) -> str:
    parts = urllib.parse.urlsplit(spec)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetError(f"target {spec!r}: expected http(s)://HOST[:PORT][/PREFIX] or consul:SERVICE[?filter=...]")
    if parts.query or parts.fragment:
        raise TargetError(f"target {spec!r}: a base URL takes no query or fragment")
    try:
        _ = parts.port
    except ValueError as exc:
        raise TargetError(f"target {spec!r}: {exc}") from None
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def parse_consul(spec: str) -> ConsulTarget:
    """``consul:NAME[?filter=EXPR][&tag=T][&warning=1]`` → what to ask Consul."""
    rest = spec[len("consul:") :]
    name, _, query = rest.partition("?")
    try:
        validate.upstream_name(name)
    except validate.Invalid as exc:
        raise TargetError(f"target {spec!r}: {exc}") from None
    filters: list[str] = []
    warning = False
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if key == "filter":
            if not value.strip():
                raise TargetError(f"target {spec!r}: empty filter")
            filters.append(f"({value})")
        elif key == "tag":
            try:
                tag = validate.safe_token("tag", value)
            except validate.Invalid as exc:
                raise TargetError(f"target {spec!r}: {exc}") from None
            filters.append(f'"{tag}" in Service.Tags')
        elif key == "warning":
            warning = value.lower() in ("1", "true", "yes")
        else:
            raise TargetError(f"target {spec!r}: unknown parameter {key!r} (filter, tag, warning)")
    return ConsulTarget(name, " and ".join(filters) or None, warning)


class _SubsetClient(ConsulClient):
    """syncer's Consul client, plus the ``filter`` parameter a subset needs."""

    def health_subset(self, target: ConsulTarget) -> Answer:
        params: list[tuple[str, object]] = [] if target.include_warning else [("passing", "1")]
        if target.filter:
            params.append(("filter", target.filter))
        return self._blocking(f"/v1/health/service/{target.service}", 0, 0.0, params)


def resolve_consul(target: ConsulTarget, settings: ConsulSettings) -> tuple[Server, ...]:
    client = _SubsetClient(settings)
    try:
        answer = client.health_subset(target)
    except ConsulError as exc:
        raise TargetError(f"consul:{target.service}: {exc}") from None
    finally:
        client.close()
    try:
        normalized = health_entries(target.service, answer.body, Rules(include_warning=target.include_warning))
    except AnswerInvalid as exc:
        raise TargetError(f"consul:{target.service}: {exc}") from None
    servers = tuple(s for s in normalized.servers if not s.down)
    if not servers:
        rejected = "; ".join(str(r) for r in normalized.rejections[:3])
        what = f" matching {target.filter}" if target.filter else ""
        raise TargetError(
            f"consul:{target.service}: no healthy instance{what}" + (f" (rejected: {rejected})" if rejected else "")
        )
    return servers


def resolve(spec: str, consul: ConsulSettings | None) -> Target:
    if spec.startswith("consul:"):
        if consul is None:
            raise TargetError(f"target {spec!r}: Consul settings are needed")
        servers = resolve_consul(parse_consul(spec), consul)
        return Target(spec, tuple(f"http://{s.endpoint}" for s in servers))
    return Target(spec, (_base_url(spec),))
