"""Rendering upstream.conf from a Jinja2 template: a pure function of the desired state.

Output is deterministic (sorted upstreams and servers, no timestamps), so unchanged data
gives unchanged bytes and no reload. ``finalize`` re-checks every value a template
prints: even a user template cannot put nginx syntax into the file.

Tags and Meta reach the template unchecked (they are data until printed). When a
template prints one that nginx would read as syntax, only the instance it belongs to is
left out: its server line goes, the rest of the upstream renders, and the refusal is
logged once (service, instance, field, value, reason). This works for any template,
without special markup: the whole file is rendered first (the common case costs one
render); only when ``finalize`` refuses a value is each server tried on its own, in an
otherwise empty picture, and the refused ones dropped. An upstream whose every server
was refused renders the template's placeholder (nginx answers 502), never an empty block.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import jinja2
import structlog

from syncer import validate
from syncer.model import Desired, Server, Upstream, make_upstream
from syncer.resources import templates_dir

DEFAULT_TEMPLATE = "upstream.conf.j2"
# Where an upstream with no healthy instance points: a `down` server, so nginx keeps a
# valid block and answers 502 ("no live upstreams") instead of failing `nginx -t`.
PLACEHOLDER = "127.0.0.1:65535"

log = structlog.get_logger("syncer.render")


class RenderError(Exception):
    pass


class ValueRefused(RenderError):
    """``finalize`` refused a printed value: the value and why, for the refusal log."""

    def __init__(self, value: str, reason: str) -> None:
        self.value = value
        self.reason = reason
        super().__init__(f"template printed {value!r}: {reason}")


@dataclass(frozen=True)
class Refusal:
    """One instance left out of the rendered file because of a value its template printed."""

    service: str
    instance: str
    field: str
    value: str
    reason: str

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (self.service, self.instance, self.field, self.value, self.reason)


def _finalize(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        if value == "":
            return value
        try:
            return validate.safe_token("rendered value", value)
        except validate.Invalid as exc:
            raise ValueRefused(value, exc.reason) from None
    raise RenderError(f"template printed a {type(value).__name__}; print its fields one by one")


def field_of(server: Server, value: str) -> str:
    """Which of the instance's fields a refused printed value came from (Consul's names)."""
    if value == server.instance_id:
        return "Service.ID"
    for i, tag in enumerate(server.tags):
        if tag == value:
            return f"Service.Tags[{i}]"
    for key, meta_value in server.meta:
        if meta_value == value:
            return f"Service.Meta.{key}"
        if key == value:
            return "Service.Meta key"
    for i, tag in enumerate(server.tags):
        if tag and tag in value:
            return f"Service.Tags[{i}] (in a printed expression)"
    for key, meta_value in server.meta:
        if meta_value and meta_value in value:
            return f"Service.Meta.{key} (in a printed expression)"
    return "a printed expression"


class Renderer:
    def __init__(self, template: Path | None = None) -> None:
        path = template or templates_dir() / DEFAULT_TEMPLATE
        self.path = path
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(path.parent)),
            undefined=jinja2.StrictUndefined,
            autoescape=False,  # noqa: S701 - nginx config, not HTML; values are checked by finalize
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            finalize=_finalize,
        )
        self.refusals: tuple[Refusal, ...] = ()  # from the last render
        self.emptied: frozenset[str] = frozenset()  # upstreams whose every server was refused
        self._logged: set[tuple[str, str, str, str, str]] = set()
        self._logged_emptied: frozenset[str] = frozenset()

    def _render(self, upstreams: Iterable[Upstream]) -> str:
        try:
            template = self._env.get_template(self.path.name)
            return template.render(upstreams=list(upstreams), placeholder=PLACEHOLDER)
        except RenderError:
            raise
        except jinja2.TemplateError as exc:
            where = f" line {exc.lineno}" if isinstance(exc, jinja2.TemplateSyntaxError) else ""
            raise RenderError(f"template {self.path}{where}: {exc}") from exc

    def render(self, desired: Desired) -> str:
        try:
            text = self._render(desired.sorted())
        except ValueRefused as first:
            text = self._render_without_refused(desired, first)
        else:
            self.refusals, self.emptied = (), frozenset()
        self._log_refusals()
        return text

    def _render_without_refused(self, desired: Desired, first: ValueRefused) -> str:
        upstreams = desired.sorted()
        try:
            # A value printed outside any server (the upstream's own fields, the template's
            # text) is refused whatever the servers are: nothing to leave out, so fail.
            self._render(replace(u, servers=()) for u in upstreams)
        except ValueRefused:
            raise first from None
        refusals: list[Refusal] = []
        kept: list[Upstream] = []
        emptied: set[str] = set()
        for upstream in upstreams:
            servers: list[Server] = []
            for server in upstream.servers:
                try:
                    self._render([replace(upstream, servers=(server,))])
                except ValueRefused as exc:
                    field = field_of(server, exc.value)
                    refusals.append(Refusal(upstream.name, server.instance_id, field, exc.value, exc.reason))
                    continue
                servers.append(server)
            kept.append(make_upstream(upstream.name, servers) if len(servers) != len(upstream.servers) else upstream)
            if upstream.servers and not servers:
                emptied.add(upstream.name)
        self.refusals, self.emptied = tuple(refusals), frozenset(emptied)
        return self._render(kept)

    def _log_refusals(self) -> None:
        """Each refusal once while it lasts; again only if it goes away and comes back."""
        current = {r.key for r in self.refusals}
        for refusal in self.refusals:
            if refusal.key not in self._logged:
                log.warning(
                    "instance left out: the template printed a value that is nginx syntax",
                    service=refusal.service,
                    instance=refusal.instance,
                    field=refusal.field,
                    value=refusal.value[:200],
                    reason=refusal.reason,
                )
        self._logged = current
        for name in sorted(self.emptied - self._logged_emptied):
            log.error(
                "every instance of the service was refused by the template; its upstream renders "
                "the placeholder (nginx answers 502)",
                service=name,
                refused=sum(1 for r in self.refusals if r.service == name),
            )
        self._logged_emptied = self.emptied
