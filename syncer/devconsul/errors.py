"""Errors that become HTTP answers, worded the way Consul words them."""

from __future__ import annotations

ANONYMOUS_ACCESSOR = "00000000-0000-0000-0000-000000000002"


class HTTPError(Exception):
    """An answer with a status code and a text/plain body (Consul's ``HTTPError``)."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = dict(headers or {})


class MethodNotAllowed(HTTPError):
    def __init__(self, method: str, allowed: list[str]) -> None:
        # Consul lists OPTIONS first in the Allow header (MethodNotAllowedError).
        allow = ",".join(["OPTIONS", *allowed])
        super().__init__(405, f"method {method} not allowed", {"Allow": allow})


class RPCError(HTTPError):
    """An error raised inside an RPC handler: Consul answers 500 with its text."""

    def __init__(self, reason: str) -> None:
        super().__init__(500, reason)


class ACLNotFound(HTTPError):
    def __init__(self) -> None:
        super().__init__(403, "ACL not found")


class PermissionDenied(HTTPError):
    """acl.PermissionDeniedError.Error() from Consul's acl/errors.go."""

    def __init__(self, accessor: str, resource: str, level: str, name: str | None) -> None:
        if accessor == ANONYMOUS_ACCESSOR:
            message = "Permission denied: anonymous token"
        else:
            message = f"Permission denied: token with AccessorID '{accessor}'"
        message += f" lacks permission '{resource}:{level}'"
        if name:
            message += f' on "{name}"'
        if accessor == ANONYMOUS_ACCESSOR:
            message += ". The anonymous token is used implicitly when a request does not specify a token."
        super().__init__(403, message)
