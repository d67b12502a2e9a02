"""Reload mode: the gray rules (stages 1-4) of every entry as native nginx ``map``/``geo`` blocks.

Per entry the result is one variable, ``gray_var(entry)``: a pool name when a KV stage
decided, else "" and the Consul chain (stages 5-7) decides. Stages, first match wins:

1. ``map $http_<header>``: ``always`` -> canary, ``never`` -> primary (or "-": stop, Consul decides)
2. ``map $cookie_<name>``: the same
3. ``geo``: the flattened address ranges (``kv_table.gray_table``), client address as
   the realip module leaves it (``$remote_addr``); IPv4-only lists use ``ranges`` when that
   takes fewer lines than CIDRs
4. ``map $host`` with ``hostnames``: exact names, ``*.suffix`` wildcards (longest wins), default

A chain of maps picks the first stage that answered, evaluating a later stage only when
needed. Every printed value passed validation (pool names, host names, header names).
"""

from __future__ import annotations

from collections.abc import Iterable

from syncer.routing.kv_table import GrayTable, PoolRange

STOP = "-"  # "never" without a primary: the KV stages end, Consul's chain decides
_BROADCAST = 0xFFFFFFFF  # what geo's ranges mode looks up for a non-IPv4 client


def _suffix(entry: str) -> str:
    """An injective spelling of a service name as part of an nginx variable name."""
    return entry.replace("_", "__").replace("-", "_d").replace(".", "_p")


def gray_var(entry: str) -> str:
    return f"syncer_gray_{_suffix(entry)}"


def _q(value: str) -> str:
    return f'"{value}"'


def _override_map(source: str, var: str, canary: str, primary: str | None) -> list[str]:
    return [
        f"map ${source} ${var} {{",
        '    default "";',
        f"    always {_q(canary)};",
        f"    never {_q(primary or STOP)};",
        "}",
    ]


def _use_ranges(v4: tuple[PoolRange, ...], v6: tuple[PoolRange, ...]) -> bool:
    if v6 or not v4 or v4[-1].last == _BROADCAST:
        return False  # ranges mode is IPv4-only and answers 255.255.255.255 for IPv6 clients
    return len(v4) < sum(len(r.cidrs()) for r in v4)


def geo_block(var: str, table: GrayTable) -> list[str]:
    v4, v6 = table.ranges_of(4), table.ranges_of(6)
    lines = [f"geo ${var} {{"]
    if _use_ranges(v4, v6):
        lines.append("    ranges;")
        lines.append('    default "";')
        lines.extend(f"    {r.text()[0]}-{r.text()[1]} {_q(r.pool)};" for r in v4)
    else:
        lines.append('    default "";')
        lines.extend(f"    {cidr} {_q(r.pool)};" for r in v4 + v6 for cidr in r.cidrs())
    lines.append("}")
    return lines


def host_block(var: str, table: GrayTable) -> list[str]:
    lines = [f"map $host ${var} {{", "    hostnames;", f"    default {_q(table.host_default or '')};"]
    lines.extend(f"    {_q(name)} {_q(pool)};" for name, pool in table.exact)
    lines.extend(f"    {_q('*' + suffix)} {_q(pool)};" for suffix, pool in table.wildcard)
    lines.append("}")
    return lines


def entry_block(table: GrayTable) -> list[str]:
    base = gray_var(table.entry)
    lines = [f"# gray rules of entry {table.entry} (Consul KV)"]
    stages: list[tuple[str, bool]] = []  # (variable, may answer STOP), in precedence order
    if table.header_var is not None and table.canary is not None:
        stages.append((f"{base}_h", True))
        lines += _override_map(table.header_var, f"{base}_h", table.canary, table.primary)
    if table.cookie_var is not None and table.canary is not None:
        stages.append((f"{base}_c", True))
        lines += _override_map(table.cookie_var, f"{base}_c", table.canary, table.primary)
    if table.ranges:
        stages.append((f"{base}_a", False))
        lines += geo_block(f"{base}_a", table)
    if table.has_hosts:
        stages.append((f"{base}_n", False))
        lines += host_block(f"{base}_n", table)
    # A chain of maps, first stage that answered wins. nginx evaluates a map's value only
    # when asked for it, so a later stage (the geo lookup, the Host map) is looked at only
    # when every stage before it had nothing to say; "-" from an override ends the chain.
    following = '""'
    for i in range(len(stages) - 1, -1, -1):
        var, may_stop = stages[i]
        link = base if i == 0 else f"{base}_{i}"
        lines += [f"map ${var} ${link} {{", f'    "" {following};']
        if may_stop:
            lines.append(f'    "{STOP}" "";')
        lines += [f"    default ${var};", "}"]
        following = f"${link}"
    lines += [
        f"map ${base} ${base}_set {{",  # 1 when a KV stage answered: the route chain's first link
        '    "" 0;',
        "    default 1;",
        "}",
    ]
    return lines


def render_gray(tables: Iterable[GrayTable]) -> str:
    """The http-level blocks for every entry with gray rules (deterministic bytes)."""
    lines = ["# Gray rules from Consul KV, rendered by syncer. Do not edit."]
    for table in sorted(tables, key=lambda t: t.entry):
        lines.append("")
        lines.extend(entry_block(table))
    return "\n".join(lines) + "\n"
