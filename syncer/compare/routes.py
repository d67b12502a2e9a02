"""Group requests by route: method plus the path with numeric segments folded.

Seed 000 folds dynamic routes with ``uri:gsub("/%d+", "/{num}")``; the same rule here
keeps ``/api/user/100/10/post.json`` and ``/api/user/7/3/post.json`` one route.
"""

from __future__ import annotations

import re

_NUMERIC = re.compile(r"/[0-9]+")


def fold_path(uri: str) -> str:
    """The path of ``uri`` (query dropped) with every ``/<digits>`` run made ``/{num}``."""
    path = uri.split("?", 1)[0].split("#", 1)[0]
    return _NUMERIC.sub("/{num}", path)


def route_of(method: str, uri: str) -> str:
    return f"{method} {fold_path(uri)}"
