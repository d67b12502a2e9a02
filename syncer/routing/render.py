"""Reload mode: the routing tables as native nginx, in two kinds of files.

``syncer-routing.conf`` (http level, included next to the upstreams) turns each entry's
table into variables:

* one ``map`` per match condition (``$uri``, ``$request_method``, ``$http_<name>``,
  ``$arg_<name>``) giving 1 or 0;
* map chains over them: ``map $c0 $x { 1 $c1; default 0; }`` is "c0 and c1" and
  ``map $route0 $y { 1 0; default $z; }`` is "route 0, else whatever $z says". nginx
  evaluates a map's value only when it is chosen, so both short-circuit: a condition is
  tested only when the ones before it held, and a route only when no earlier one matched;
* ``split_clients`` per split action (0.01 % resolution, keyed on ``$request_id`` or the
  sticky key), and ``$syncer_pool_<entry>``: the pool (upstream) to proxy to;
* maps for the prefix rewrite and the header values of the chosen route.

``syncer-routing-<entry>.location`` (location level) uses them: the rewrite, the header
directives, the entry's retry/timeout policy and ``proxy_pass http://$syncer_pool_<entry>``.

Every value printed comes out of ``quote`` (a double-quoted nginx string with ``\\`` and
``"`` escaped; ``$`` never reaches here, entries refuse it) or is a name that passed the
entry checks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from syncer.resources import templates_dir
from syncer.routing import regex
from syncer.routing.entries import HeaderMatch, HeaderMods, HTTPMatch, QueryMatch
from syncer.routing.kv_chain import with_gray
from syncer.routing.names import var_suffix
from syncer.routing.render_gray import render_gray
from syncer.routing.table import Action, RouteTable

HTTP_FILE = "syncer-routing.conf"
ENTRY_FILE = "syncer-routing-{entry}.location"
_SAFE = re.compile(r"^[A-Za-z0-9_.$:%-]+$")


class Quoted(str):
    """A string already written as an nginx double-quoted token."""

    __slots__ = ()


def quote(text: str) -> Quoted:
    return Quoted('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')


def _finalize(value: object) -> object:
    if isinstance(value, Quoted | int | float):
        return value
    if isinstance(value, str) and (value == "" or _SAFE.match(value)):
        return value
    raise ValueError(f"routing template printed an unquoted value {value!r}")


def header_var(name: str) -> str:
    return "http_" + name.lower().replace("-", "_")


@dataclass
class CondMap:
    var: str
    source: str
    pattern: Quoted
    invert: bool


@dataclass
class Link:
    """``map $source $var { 1 <then>; default <otherwise>; }``: nginx evaluates map values
    lazily, so a chain of these is a short-circuit AND, and an ordered first match."""

    source: str
    var: str
    then: str
    otherwise: str


@dataclass
class SplitView:
    var: str
    key: str  # the variable split_clients hashes
    key_source: str  # "" or the sticky variable that may be empty
    legs: list[tuple[str, str]]  # ("90.00%", pool), the last one printed as "*"


@dataclass
class HeaderView:
    var: str
    name: str
    key: Quoted
    default: Quoted
    values: list[tuple[Quoted, Quoted]]  # (regex over "<route>|<current>", value)
    hide: bool = False


@dataclass
class EntryView:
    name: str
    e: str
    conds: list[CondMap] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    route: str = "d"  # what $syncer_route_<entry> is: the first link's variable, or a constant
    pool_map: list[tuple[str, str]] = field(default_factory=list)
    pool_default: str = ""
    splits: list[SplitView] = field(default_factory=list)
    rewrites: list[tuple[Quoted, Quoted]] = field(default_factory=list)
    request_headers: list[HeaderView] = field(default_factory=list)
    response_headers: list[HeaderView] = field(default_factory=list)
    policy_tries: int = 0
    policy_next: str = ""
    policy_timeout: str = ""


@dataclass(frozen=True)
class Cond:
    """One match condition: the nginx variable it reads and the PCRE pattern it must match
    (``\\z``, not ``$``: PCRE's ``$`` also matches before a final newline, and ``$uri`` is
    decoded). ``literal`` says the pattern is a plain string test the Lua router may do
    without a regex: ("prefix" | "exact" | "suffix" | "nonempty", text)."""

    var: str
    pattern: str
    invert: bool = False
    literal: tuple[str, str] | None = None


def _literal(var: str, kind: str, text: str, invert: bool = False) -> Cond:
    lit = regex.literal(text)
    pattern = {"prefix": f"^{lit}", "exact": f"^{lit}\\z", "suffix": f"{lit}\\z"}[kind]
    return Cond(var, pattern, invert, (kind, text))


def conditions(match: HTTPMatch) -> list[Cond]:
    """Every condition of a route, in the order both modes test them."""
    out: list[Cond] = []
    if match.path_exact:
        out.append(_literal("uri", "exact", match.path_exact))
    elif match.path_prefix:
        out.append(_literal("uri", "prefix", match.path_prefix))
    elif match.path_regex:
        out.append(Cond("uri", regex.anchored(match.path_regex)))
    if match.methods:
        out.append(Cond("request_method", f"^(?:{'|'.join(match.methods)})\\z"))
    out.extend(_header(h) for h in match.headers)
    out.extend(_query(q) for q in match.query)
    return out


def _header(h: HeaderMatch) -> Cond:
    var = header_var(h.name)
    if h.exact:
        return _literal(var, "exact", h.exact, h.invert)
    if h.prefix:
        return _literal(var, "prefix", h.prefix, h.invert)
    if h.suffix:
        return _literal(var, "suffix", h.suffix, h.invert)
    if h.regex:
        return Cond(var, regex.anchored(h.regex), h.invert)
    # Present: nginx cannot tell an empty header from a missing one
    return Cond(var, ".", h.invert, ("nonempty", ""))


def _query(q: QueryMatch) -> Cond:
    var = "arg_" + q.name
    if q.exact:
        return _literal(var, "exact", q.exact)
    if q.regex:
        return Cond(var, regex.anchored(q.regex))
    return Cond(var, ".", False, ("nonempty", ""))


def rewrite_pattern(match: HTTPMatch, key_prefix: str = "") -> tuple[str, bool]:
    """(pattern, captures the rest) replacing the matched PathExact / PathPrefix."""
    if match.path_exact:
        return f"(?s)^{key_prefix}{regex.literal(match.path_exact)}\\z", False
    return f"(?s)^{key_prefix}{regex.literal(match.path_prefix)}(.*)\\z", True


def _percent(units: int) -> str:
    return f"{units // 100}.{units % 100:02d}%"


def sticky_source(action: Action) -> str:
    sticky = action.sticky
    if sticky is None:
        return ""
    if sticky.source == "cookie":
        return f"cookie_{sticky.name}"
    if sticky.source == "header":
        return header_var(sticky.name)
    return "remote_addr"


def entry_view(table: RouteTable) -> EntryView:
    e = var_suffix(table.entry)
    view = EntryView(table.entry, e)
    actions: list[tuple[str, Action]] = []
    bits: list[str | None] = []  # per route: the variable that is 1 when it matches; None: always
    for i, route in enumerate(table.routes):
        names = []
        for j, cond in enumerate(conditions(route.match)):
            var = f"syncer_c_{e}_{i}_{j}"
            view.conds.append(CondMap(var, cond.var, quote("~" + cond.pattern), cond.invert))
            names.append(var)
        # AND, short-circuit: condition j is evaluated only when the ones before it hold
        bit = names[-1] if names else None
        for j in range(len(names) - 2, -1, -1):
            var = f"syncer_a_{e}_{i}_{j}"
            view.links.append(Link(names[j], var, f"${bit}", "0"))
            bit = var
        bits.append(bit)
        actions.append((str(i), route.action))
    # first match: route i's bit is evaluated only when no route before it matched
    chosen = "d"
    for i in range(len(bits) - 1, -1, -1):
        bit = bits[i]
        if bit is None:
            chosen = str(i)
            continue
        var = f"syncer_from_{e}_{i}"
        view.links.append(Link(bit, var, str(i), chosen))
        chosen = f"${var}"
    view.route = chosen
    actions.append(("d", table.default))
    for key, action in actions:
        target = action.single
        if target is None:
            split = SplitView(f"syncer_s_{e}_{key}", "request_id", "", [])
            source = sticky_source(action)
            if source == "remote_addr":
                split.key = "remote_addr"
            elif source:
                split.key, split.key_source = f"syncer_k_{e}_{key}", source
            split.legs = [(_percent(leg.units), leg.pool) for leg in action.legs]
            view.splits.append(split)
            target = f"${split.var}"
        if key == "d":
            view.pool_default = target
        else:
            view.pool_map.append((key, target))
    for i, route in enumerate(table.routes):
        rewrite = route.action.prefix_rewrite
        if rewrite:
            pattern, rest = rewrite_pattern(route.match, f"{i}:")
            pattern, value = "~" + pattern, rewrite + ("$1" if rest else "")
            view.rewrites.append((quote(pattern), Quoted('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"')))
    view.request_headers = _request_headers(e, [(str(i), r.action.request_headers) for i, r in enumerate(table.routes)])
    view.response_headers = _response_headers(
        e, [(str(i), r.action.response_headers) for i, r in enumerate(table.routes)]
    )
    policy = table.policy
    view.policy_tries = policy.tries
    view.policy_next = " ".join(policy.next_upstream)
    view.policy_timeout = f"{policy.read_timeout:g}s" if policy.read_timeout else ""
    return view


def _names(mods: list[tuple[str, HeaderMods]]) -> list[str]:
    seen: dict[str, str] = {}
    for _, m in mods:
        for name in [n for n, _ in m.add] + [n for n, _ in m.set] + list(m.remove):
            seen.setdefault(name.lower(), name)
    return [seen[k] for k in sorted(seen)]


def _request_headers(e: str, mods: list[tuple[str, HeaderMods]]) -> list[HeaderView]:
    """Request header values per route, over "<route>|<current value>"; the current value by default."""
    out = []
    for k, name in enumerate(_names(mods)):
        current = f"${header_var(name)}"
        view = HeaderView(
            f"syncer_rqh_{e}_{k}", name, Quoted(f'"$syncer_route_{e}|{current}"'), Quoted(f'"{current}"'), []
        )
        low = name.lower()
        for route, m in mods:
            added = [v for n, v in m.add if n.lower() == low]
            setv = [v for n, v in m.set if n.lower() == low]
            if any(n.lower() == low for n in m.remove):
                view.values.append((quote(f"~^{route}\\|"), Quoted('""')))
            elif setv:
                view.values.append((quote(f"~^{route}\\|"), quote(setv[-1])))
            elif added:
                view.values.append((quote(f"~^{route}\\|\\z"), quote(added[-1])))
                view.values.append((quote(f"~^{route}\\|(.+)\\z"), Quoted('"$1, ' + quote(added[-1])[1:])))
        out.append(view)
    return out


def _response_headers(e: str, mods: list[tuple[str, HeaderMods]]) -> list[HeaderView]:
    """Response headers: Set and Remove hide the upstream's value and print the route's."""
    out = []
    for k, name in enumerate(_names(mods)):
        low = name.lower()
        hide = any(any(n.lower() == low for n, _ in m.set) or any(n.lower() == low for n in m.remove) for _, m in mods)
        upstream = f"$upstream_{header_var(name)}"
        default = Quoted(f'"{upstream}"' if hide else '""')
        view = HeaderView(f"syncer_rsh_{e}_{k}", name, Quoted(f'"$syncer_route_{e}"'), default, [], hide)
        for route, m in mods:
            added = [v for n, v in m.add if n.lower() == low]
            setv = [v for n, v in m.set if n.lower() == low]
            if any(n.lower() == low for n in m.remove):
                view.values.append((quote(route), Quoted('""')))
            elif setv:
                view.values.append((quote(route), quote(setv[-1])))
            elif added:
                prefix = f"{upstream}, " if hide else ""
                view.values.append((quote(route), Quoted('"' + prefix + quote(added[-1])[1:])))
        out.append(view)
    return out


class RoutingRenderer:
    def __init__(self, directory: Path | None = None) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(directory or templates_dir())),
            undefined=jinja2.StrictUndefined,
            autoescape=False,  # noqa: S701 - nginx config; values are quoted by quote()
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            finalize=_finalize,
        )

    def render(self, tables: Mapping[str, RouteTable]) -> dict[str, str]:
        """File name -> text: the http-level file and one location-level file per entry."""
        views = [with_gray(entry_view(tables[name]), tables[name]) for name in sorted(tables)]
        files = {HTTP_FILE: self._env.get_template("routing.conf.j2").render(entries=views)}
        grays = [t.gray for t in tables.values() if t.gray is not None]
        if grays:  # KV stages 1-4 (issue 11): geo/map blocks feeding the choosers above
            files[HTTP_FILE] += "\n" + render_gray(grays)
        entry_template = self._env.get_template("routing-entry.conf.j2")
        for view in views:
            files[ENTRY_FILE.format(entry=view.name)] = entry_template.render(entry=view)
        return files
