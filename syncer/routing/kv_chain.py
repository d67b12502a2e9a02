"""Where the KV gray stages (1-4) meet the Consul chain (5-7): planning and reload rendering.

``attach_gray`` resolves an entry's KV targets with the chain's own resolution (subset
from the service-resolver, default subset, redirect, failover) and puts the result on
the entry's ``RouteTable``. ``with_gray`` puts the gray variable in front of the
reload-mode route chain: when a KV stage answered, the route is ``g`` (no router route, so
no rewrite or header change; the router's conditions are not even evaluated) and the pool
is the gray variable's value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from syncer.routing.kv import Target
from syncer.routing.kv_rules import EntryRules
from syncer.routing.kv_table import gray_table
from syncer.routing.render_gray import gray_var
from syncer.routing.table import RouteTable

if TYPE_CHECKING:
    from syncer.routing.render import EntryView

GRAY_ROUTE = "g"


def attach_gray(table: RouteTable, rules: EntryRules | None, target: Callable[[str, str], str]) -> RouteTable:
    """``table`` with the entry's gray stages; ``target(service, subset)`` is the chain's
    resolution to a pool and raises ChainError for a subset no resolver defines."""
    if rules is None:
        return table

    def pool_of(t: Target) -> str:
        return target(t.service, t.subset or "")

    return replace(table, gray=gray_table(rules, pool_of))


def with_gray(view: EntryView, table: RouteTable) -> EntryView:
    if table.gray is None:
        return view
    from syncer.routing.render import Link  # noqa: PLC0415 - render.py imports this module

    gray = gray_var(table.entry)
    # "$<gray>_set" is 1 when a KV stage answered (render_gray); only then is it route "g"
    var = f"syncer_gw_{view.e}"
    view.links.append(Link(f"{gray}_set", var, GRAY_ROUTE, view.route))
    view.route = f"${var}"
    view.pool_map = [(GRAY_ROUTE, f"${gray}"), *view.pool_map]
    return view
