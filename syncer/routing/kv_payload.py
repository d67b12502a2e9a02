"""Api mode: one entry's gray rules as the JSON lua/syncer/gray.lua compiles (once per version)."""

from __future__ import annotations

from typing import Any

from syncer.routing.kv_rules import EntryRules, address_ranges


def gray_payload(rules: EntryRules) -> dict[str, Any]:
    body: dict[str, Any] = {}
    override = rules.override
    if override is not None:
        if override.header_var is not None:
            body["header_var"] = override.header_var
        if override.cookie_var is not None:
            body["cookie_var"] = override.cookie_var
        body["canary"] = override.target.pool
        if override.primary is not None:
            body["primary"] = override.primary.pool
    if rules.lists:
        body["ranges"] = [
            [*r.text(), r.target.pool] for version in (4, 6) for r in address_ranges(rules.lists, version)
        ]
    if rules.hosts is not None:
        hosts = rules.hosts
        body["hosts"] = {
            "exact": {name: t.pool for name, t in hosts.exact},
            "wildcard": {suffix: t.pool for suffix, t in hosts.wildcard},
            "default": hosts.default.pool if hosts.default else None,
        }
    return body
