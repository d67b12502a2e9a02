"""Where the files shipped beside the code live: Jinja2 templates and the nginx Lua modules.

In a wheel they sit inside the package (``syncer/_shipped/``, see pyproject.toml); in a
checkout or an editable install they are the repository's top-level ``templates/`` and
``lua/`` folders.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _shipped(name: str) -> Path:
    inside = _PACKAGE / "_shipped" / name
    if inside.is_dir():
        return inside
    beside = _PACKAGE.parent / name
    if beside.is_dir():
        return beside
    raise FileNotFoundError(f"syncer's {name}/ folder is missing from {inside} and {beside}")


def templates_dir() -> Path:
    return _shipped("templates")


def lua_dir() -> Path:
    """The folder to put on ``lua_package_path`` (it holds ``syncer/*.lua``)."""
    return _shipped("lua")
