"""service-resolver subsets: Consul's ``Filter`` over health entries, evaluated in syncer.

Consul resolves a subset with ``GET /v1/health/service/<svc>?filter=...``; syncer already
holds the one health watch per service, so it applies the same go-bexpr expression
(``syncer.filterexpr``) to each healthy instance, shaped like the health entry it came
from: ``Service.Meta.x``, ``Service.Tags``, ``Service.ID``, ``Node.Meta.x``, ``Node.Node``.
"""

from __future__ import annotations

from typing import Any

from syncer.filterexpr import Filter
from syncer.model import Server
from syncer.routing.entries import HEALTH_SELECTORS, Subset


def compile_filter(expression: str) -> Filter:
    """FilterError when the expression uses a selector syncer cannot evaluate."""
    return Filter(expression, HEALTH_SELECTORS)


def as_health_entry(service: str, server: Server) -> dict[str, Any]:
    return {
        "Node": {"Node": server.node, "Address": server.address, "Meta": dict(server.node_meta)},
        "Service": {
            "ID": server.instance_id,
            "Service": service,
            "Tags": list(server.tags),
            "Meta": dict(server.meta),
            "Port": server.port,
            "Address": server.address,
        },
    }


def members(service: str, servers: tuple[Server, ...], subset: Subset) -> tuple[Server, ...]:
    """The instances of ``service`` in ``subset`` (OnlyPassing drops those in warning)."""
    keep = compile_filter(subset.filter) if subset.filter else None
    return tuple(
        s
        for s in servers
        if (not subset.only_passing or s.status == "passing")
        and (keep is None or keep.matches(as_health_entry(service, s)))
    )
