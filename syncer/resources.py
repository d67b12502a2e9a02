"""Where the files shipped beside the code live: Jinja2 templates and the nginx Lua modules.

In a wheel they sit inside the package (``syncer/_shipped/``, see pyproject.toml); in a
checkout or an editable install they are the repository's top-level ``templates/`` and
``lua/`` folders.

nginx.conf must not name the copy inside the package: it lives in a virtualenv's
site-packages, whose path changes with the Python version, so a venv rebuild would break
nginx at its next reload. scripts/install.sh copies the Lua modules to a stable folder
(``/usr/share/syncer/lua``) and its wrapper names it in ``SYNCER_LUA_DIR``, which
:func:`lua_dir` prefers.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent

STABLE_LUA_DIR = Path("/usr/share/syncer/lua")
"""Where scripts/install.sh puts the Lua modules (``syncer/*.lua`` below it)."""
LUA_DIR_ENV = "SYNCER_LUA_DIR"


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


def shipped_lua_dir() -> Path:
    """The Lua modules inside the installed package (or the checkout)."""
    return _shipped("lua")


def holds_lua(folder: Path) -> bool:
    return (folder / "syncer" / "init.lua").is_file()


def lua_dir() -> Path:
    """The folder to put on ``lua_package_path`` (it holds ``syncer/*.lua``): the one
    ``SYNCER_LUA_DIR`` names (the installed wrapper sets it), else the package's own copy.
    Never guessed from what happens to be on disk: a checkout's tests must not pick up an
    older installed copy."""
    named = os.environ.get(LUA_DIR_ENV)
    return Path(named) if named else shipped_lua_dir()


def installed_lua_dir() -> Path:
    """Where the installed Lua modules are (or will be): ``SYNCER_LUA_DIR`` when set, else
    scripts/install.sh's folder. For configs written for an installed host."""
    named = os.environ.get(LUA_DIR_ENV)
    return Path(named) if named else STABLE_LUA_DIR


def is_stable(folder: Path) -> bool:
    """False for a folder inside the Python package: fine for a trial, not for nginx.conf."""
    try:
        folder.resolve().relative_to(_PACKAGE)
    except ValueError:
        return True
    return False
