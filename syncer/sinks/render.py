"""Rendering upstream.conf from a Jinja2 template: a pure function of the desired state.

Output is deterministic (sorted upstreams and servers, no timestamps), so unchanged data
gives unchanged bytes and no reload. ``finalize`` re-checks every value a template
prints: even a user template cannot put nginx syntax into the file.
"""

from __future__ import annotations

from pathlib import Path

import jinja2

from syncer import validate
from syncer.model import Desired
from syncer.resources import templates_dir

DEFAULT_TEMPLATE = "upstream.conf.j2"
# Where an upstream with no healthy instance points: a `down` server, so nginx keeps a
# valid block and answers 502 ("no live upstreams") instead of failing `nginx -t`.
PLACEHOLDER = "127.0.0.1:65535"


class RenderError(Exception):
    pass


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
            raise RenderError(f"template printed {value!r}: {exc.reason}") from None
    raise RenderError(f"template printed a {type(value).__name__}; print its fields one by one")


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

    def render(self, desired: Desired) -> str:
        try:
            template = self._env.get_template(self.path.name)
            return template.render(upstreams=desired.sorted(), placeholder=PLACEHOLDER)
        except RenderError:
            raise
        except jinja2.TemplateError as exc:
            where = f" line {exc.lineno}" if isinstance(exc, jinja2.TemplateSyntaxError) else ""
            raise RenderError(f"template {self.path}{where}: {exc}") from exc
