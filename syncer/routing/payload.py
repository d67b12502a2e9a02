"""Api mode: a routing table as the JSON the Lua router evaluates (PUT /routes/<entry>).

The conditions are the very (nginx variable, PCRE pattern) pairs reload mode renders
into maps (``render._conditions``), and the Lua router reads the same variables with
``ngx.var`` and matches with ``ngx.re`` (PCRE) - so both modes decide alike by
construction. Splits carry the same 1/10000 units and key variable split_clients uses.
"""

from __future__ import annotations

import json
from typing import Any

from syncer.routing.entries import HeaderMods
from syncer.routing.kv_payload import gray_payload
from syncer.routing.render import Cond, conditions, rewrite_pattern, sticky_source
from syncer.routing.table import Action, CompiledRoute, RouteTable


def _headers(mods: HeaderMods) -> list[dict[str, str]]:
    return [
        *({"op": "set", "name": n, "value": v} for n, v in mods.set),
        *({"op": "add", "name": n, "value": v} for n, v in mods.add),
        *({"op": "remove", "name": n} for n in mods.remove),
    ]


def _cond(cond: Cond) -> dict[str, Any]:
    out: dict[str, Any] = {"var": cond.var, "re": cond.pattern, "invert": cond.invert}
    if cond.literal is not None:
        out["lit"], out["text"] = cond.literal  # a plain string test, same result as the regex
    return out


def _action(action: Action, route: CompiledRoute | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "legs": [{"pool": leg.pool, "units": leg.units} for leg in action.legs],
        "key": sticky_source(action) or "request_id",
    }
    if route is not None and action.prefix_rewrite:
        pattern, rest = rewrite_pattern(route.match)
        out["rewrite"] = {"re": pattern, "to": action.prefix_rewrite, "rest": rest}
    if not action.request_headers.empty:
        out["request_headers"] = _headers(action.request_headers)
    if not action.response_headers.empty:
        out["response_headers"] = _headers(action.response_headers)
    return out


def table_payload(table: RouteTable) -> dict[str, Any]:
    return {
        "routes": [
            {
                "conds": [_cond(c) for c in conditions(r.match)],
                "action": _action(r.action, r),
            }
            for r in table.routes
        ],
        "default": _action(table.default),
    } | ({"gray": gray_payload(table.gray)} if table.gray is not None else {})


def encode(table: RouteTable) -> bytes:
    return json.dumps(table_payload(table), sort_keys=True, separators=(",", ":")).encode()
