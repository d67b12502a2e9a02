"""Api mode: one entry's gray stages as the JSON lua/syncer/gray.lua compiles (once per version).

``ranges``: ``[4, first, last, pool]`` (IPv4 as integers) or ``[6, "hex32", "hex32", pool]``,
sorted and disjoint per family.
"""

from __future__ import annotations

from typing import Any

from syncer.routing.kv_table import GrayTable


def gray_payload(table: GrayTable) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for key, value in (
        ("header_var", table.header_var),
        ("cookie_var", table.cookie_var),
        ("canary", table.canary),
        ("primary", table.primary),
    ):
        if value is not None:
            body[key] = value
    if table.ranges:
        # IPv4 as numbers, IPv6 as 32 hex digits: the keys the Lua matcher compares, so
        # neither side formats or parses 10,000 address strings per change
        body["ranges"] = [
            [4, r.first, r.last, r.pool] if r.version == 4 else [6, f"{r.first:032x}", f"{r.last:032x}", r.pool]
            for r in table.ranges
        ]
    if table.has_hosts:
        body["hosts"] = {
            "exact": dict(table.exact),
            "wildcard": dict(table.wildcard),
            "default": table.host_default,
        }
    return body
