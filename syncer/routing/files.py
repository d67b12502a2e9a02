"""Reload mode: the routing files syncer owns, as bytes per path (written by ReloadSink)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

import jinja2

from syncer.routing.render import ENTRY_FILE, HTTP_FILE, RoutingRenderer
from syncer.routing.table import Action, Leg, RouteTable


@functools.cache
def _renderer() -> RoutingRenderer:
    return RoutingRenderer()


class RoutingRenderError(Exception):
    pass


def routing_files(directory: Path, tables: Mapping[str, RouteTable]) -> dict[Path, bytes]:
    """Nothing without tables (routing off). An entry file already on disk whose entry has
    no table any more keeps a plain one (to the entry's own pool): the location that
    includes it must still pass ``nginx -t``."""
    if not tables:
        return {}
    prefix, suffix = ENTRY_FILE.split("{entry}")
    complete = dict(tables)
    for path in directory.glob(ENTRY_FILE.format(entry="*")):
        entry = path.name[len(prefix) : -len(suffix)]
        complete.setdefault(entry, RouteTable(entry, (), Action((Leg(entry, 10000),))))
    try:
        rendered = _renderer().render(complete)
    except (jinja2.TemplateError, ValueError) as exc:
        raise RoutingRenderError(str(exc)) from exc
    assert HTTP_FILE in rendered
    return {directory / name: text.encode() for name, text in rendered.items()}
