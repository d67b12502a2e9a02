"""The normalized, validated model everything downstream of Consul works on.

Instances arrive from Consul as untrusted JSON; ``syncer.discovery.normalize`` turns
them into these frozen values only after every field passed ``syncer.validate``.
Planning and both sinks see nothing else.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from syncer.routing.table import RouteTable


@dataclass(frozen=True, order=True)
class Server:
    """One nginx upstream server, i.e. one healthy Consul instance.

    Ordering and equality use only what nginx receives; ``instance_id``, ``tags``
    and ``meta`` ride along for templates and logs.
    """

    address: str  # an IP literal (IPv6 without brackets) or, in reload mode, a DNS name
    port: int
    weight: int = 1
    max_fails: int | None = None  # None: nginx's default (1)
    fail_timeout: int | None = None  # seconds; None: nginx's default (10s)
    max_conns: int | None = None  # None or 0: unlimited
    backup: bool = False
    down: bool = False
    instance_id: str = field(default="", compare=False)
    tags: tuple[str, ...] = field(default=(), compare=False)
    meta: tuple[tuple[str, str], ...] = field(default=(), compare=False)
    # For service-resolver subset filters (Node.Meta, Node.Node, OnlyPassing); never rendered.
    node: str = field(default="", compare=False)
    node_meta: tuple[tuple[str, str], ...] = field(default=(), compare=False)
    status: str = field(default="passing", compare=False)

    @property
    def endpoint(self) -> str:
        """``addr:port`` as nginx writes it: IPv6 in brackets."""
        if is_ipv6(self.address):
            return f"[{self.address}]:{self.port}"
        return f"{self.address}:{self.port}"

    @property
    def key(self) -> tuple[str, int]:
        return (self.address, self.port)


@dataclass(frozen=True)
class Upstream:
    """What nginx should have for one upstream: a sorted, de-duplicated server set.

    An empty ``servers`` tuple means Consul confirmed there is no healthy instance;
    each sink turns that into something nginx answers with 502, never into an empty
    ``upstream {}`` block.
    """

    name: str
    servers: tuple[Server, ...]

    @property
    def empty(self) -> bool:
        return not self.servers


@dataclass(frozen=True)
class Desired:
    """The complete state nginx should be in: every upstream, by name.

    ``upstreams`` also holds the routing pools (one per (service, subset) target, named
    by ``syncer.routing.pool_name``); ``pools`` names them and ``routing`` holds the
    compiled routing table of each entry service (issue 10, docs/routing.md).
    """

    upstreams: Mapping[str, Upstream]
    routing: Mapping[str, RouteTable] = field(default_factory=dict)
    pools: frozenset[str] = frozenset()

    def sorted(self) -> list[Upstream]:
        return [self.upstreams[name] for name in sorted(self.upstreams)]


def is_ipv6(address: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(address), ipaddress.IPv6Address)
    except ValueError:
        return False


def rendered_view(
    servers: tuple[Server, ...],
) -> tuple[tuple[object, ...], ...]:
    """Everything a template may print: nginx's fields plus instance ID, tags and meta;
    and what a service-resolver subset may select on (node, node meta, status).

    A change here is a change to act on (the sink still skips a reload when the rendered
    bytes come out the same); ``Server`` equality alone ignores the rest.
    """
    return tuple((s, s.instance_id, s.tags, s.meta, s.node, s.node_meta, s.status) for s in servers)


def make_upstream(name: str, servers: list[Server] | tuple[Server, ...]) -> Upstream:
    """Sort by endpoint and keep the first server of each ``address:port``.

    Two Consul instances can point at the same endpoint (re-registration under a new
    ID); nginx must see it once. Which one wins is decided by instance ID so the
    result does not depend on Consul's answer order.
    """
    chosen: dict[tuple[str, int], Server] = {}
    for server in sorted(servers, key=lambda s: (s.address, s.port, s.instance_id)):
        chosen.setdefault(server.key, server)
    return Upstream(name=name, servers=tuple(sorted(chosen.values())))
