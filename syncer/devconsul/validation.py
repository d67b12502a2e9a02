"""Validation and small formatting rules of the agent endpoints, with Consul's messages."""

from __future__ import annotations

import re

from syncer.devconsul.decode import ANY_ADDRESSES, VALID_STATUSES, ServiceDef
from syncer.devconsul.errors import HTTPError

_META_KEY = re.compile(r"^[a-zA-Z0-9_-]+$")


def unknown_service(service_id: str) -> HTTPError:
    return HTTPError(
        404, f'Unknown service ID "{service_id}". Ensure that the service ID is passed, not the service name.'
    )


def is_ipv4(address: str) -> bool:
    parts = address.split(".")
    return len(parts) == 4 and all(p.isdigit() and 0 <= int(p) <= 255 for p in parts)


def go_duration(seconds: float) -> str:
    """time.Duration.String() for whole seconds/minutes, "" for zero (as Consul stores it)."""
    if seconds <= 0:
        return ""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    frac = seconds - whole
    sec_text = f"{secs + frac:g}s"
    if hours:
        return f"{hours}h{minutes}m{sec_text}"
    if minutes:
        return f"{minutes}m{sec_text}"
    return sec_text


def validate_service(sdef: ServiceDef) -> None:
    """The 400s of AgentRegisterService, with Consul's messages."""
    if not sdef.name:
        raise HTTPError(400, "Missing service name")
    if sdef.address in ANY_ADDRESSES:
        raise HTTPError(400, "Invalid service address")
    if sdef.weights is not None:
        passing, warning = sdef.weights["Passing"], sdef.weights["Warning"]
        reason = ""
        if passing < 1:
            reason = "Passing must be greater than 0"
        elif warning < 0:
            reason = "Warning must be greater or equal than 0"
        elif passing > 65535 or warning > 65535:
            reason = "DNS Weight must be between 0 and 65535"
        if reason:
            raise HTTPError(400, f"Invalid Weights: {reason}")
    meta = sdef.meta or {}
    if len(meta) > 64:
        raise HTTPError(400, "Invalid Service Meta: Node metadata cannot contain more than 64 key/value pairs")
    for key, value in meta.items():
        problem = ""
        if key == "":
            problem = "Key cannot be blank"
        elif not _META_KEY.match(key):
            problem = "Key contains invalid characters"
        elif len(key) > 128:
            problem = "Key is too long (limit: 128 characters)"
        elif key.startswith("consul-"):
            problem = "Key prefix 'consul-' is reserved for internal use"
        elif len(value) > 512:
            problem = "Value is too long (limit: 512 characters)"
        if problem:
            raise HTTPError(400, f"Invalid Service Meta: Couldn't load metadata pair ('{key}', '{value}'): {problem}")
    for cdef in sdef.checks:
        try:
            cdef.validate()
        except ValueError as exc:
            raise HTTPError(400, f"Invalid check: {exc}") from None
        if cdef.status and cdef.status not in VALID_STATUSES:
            raise HTTPError(400, "Status for checks must 'passing', 'warning', 'critical'")
