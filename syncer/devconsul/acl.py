"""ACLs as Consul enforces them with ``default_policy = "deny"`` and only management tokens.

Every configured token is a management token (allowed everything); the anonymous token
(no token sent) is allowed nothing; any other token is unknown and answers
``403 ACL not found``. With no tokens configured ACLs are disabled and everything is
allowed, as on a Consul agent without ``acl.enabled``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from syncer.devconsul.errors import ANONYMOUS_ACCESSOR, ACLNotFound, PermissionDenied

TOKENS_FILE_ENV = "DEV_CONSUL_ACL_TOKENS_FILE"


@dataclass(frozen=True)
class Authorizer:
    allow_all: bool
    accessor: str
    anonymous: bool = False

    def allowed(self) -> bool:
        return self.allow_all

    def require(self, resource: str, level: str, name: str | None) -> None:
        """Raise Consul's PermissionDeniedError unless the token may do ``resource:level``."""
        if not self.allow_all:
            raise PermissionDenied(self.accessor, resource, level, name)


_ALLOW_ALL = Authorizer(allow_all=True, accessor="")
_ANONYMOUS = Authorizer(allow_all=False, accessor=ANONYMOUS_ACCESSOR, anonymous=True)


class ACL:
    def __init__(self, tokens: Iterable[str] = ()) -> None:
        self._tokens = frozenset(t for t in tokens if t)

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    @property
    def default_policy(self) -> str:
        """The value of X-Consul-Default-ACL-Policy: "allow" unless ACLs are on."""
        return "deny" if self.enabled else "allow"

    def resolve(self, token: str) -> Authorizer:
        if not self.enabled:
            return _ALLOW_ALL
        if not token:
            return _ANONYMOUS
        if token in self._tokens:
            # A stable, secret-free accessor ID for messages and logs.
            return Authorizer(allow_all=True, accessor=str(uuid.uuid5(uuid.NAMESPACE_OID, token)))
        raise ACLNotFound()


def read_tokens_file(path: str | os.PathLike[str]) -> list[str]:
    """One token per line; blank lines and ``#`` comments are ignored."""
    tokens = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if text and not text.startswith("#"):
            tokens.append(text)
    return tokens


def parse_token(query: dict[str, list[str]], headers: dict[str, str]) -> str:
    """Consul's parseTokenInternal: ``?token=`` first, then X-Consul-Token, then Bearer."""
    values = query.get("token")
    if values and values[0]:
        return values[0]
    header = headers.get("x-consul-token", "")
    if header:
        return header
    auth = headers.get("authorization", "")
    parts = auth.split(" ")
    if len(parts) > 1 and parts[0].lower() == "bearer":
        value = " ".join(parts[1:]).strip()
        return value.split(" ")[0].strip()
    return ""
