"""Api mode: one entry's gray stages as the JSON lua/syncer/gray.lua compiles (once per version)."""

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
        body["ranges"] = [[*r.text(), r.pool] for r in table.ranges]
    if table.has_hosts:
        body["hosts"] = {
            "exact": dict(table.exact),
            "wildcard": dict(table.wildcard),
            "default": table.host_default,
        }
    return body
