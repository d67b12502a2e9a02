"""The limits syncer and its nginx endpoint agree on, read from the one contract file
both sides ship: ``lua/syncer/limits.json`` (the Lua side reads the same file at start).

Change a limit there, never here: this module only loads and types it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from syncer import resources


@dataclass(frozen=True)
class Range:
    low: float
    high: float

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool) and self.low <= value <= self.high


@dataclass(frozen=True)
class Limits:
    path: Path
    name: re.Pattern[str]
    name_max: int
    hash_on: re.Pattern[str]
    hash_on_max: int
    max_servers: int
    port: Range
    weight: Range
    max_fails: Range
    fail_timeout: Range
    max_conns: Range
    defaults: dict[str, Any]
    max_body_default: int
    max_body_min: int
    max_batch: int

    def valid_name(self, name: str) -> bool:
        return len(name) <= self.name_max and self.name.fullmatch(name) is not None


def contract_path() -> Path:
    """The copy shipped with this Python code (same version by construction); an operator's
    SYNCER_LUA_DIR is nginx's business and may not be installed yet."""
    return resources.shipped_lua_dir() / "syncer" / "limits.json"


def _range(raw: Any) -> Range:
    low, high = raw
    return Range(low, high)


@cache
def load(path: Path | None = None) -> Limits:
    path = path or contract_path()
    raw = json.loads(path.read_text())
    # The character classes are written so they mean the same in a Lua pattern set and
    # in a regex class (ranges, then literal characters, '-' last).
    return Limits(
        path=path,
        name=re.compile(f"[{raw['name']['first']}][{raw['name']['rest']}]*"),
        name_max=raw["name"]["max_length"],
        hash_on=re.compile(f"[{raw['hash_on']['chars']}]+"),
        hash_on_max=raw["hash_on"]["max_length"],
        max_servers=raw["max_servers"],
        port=_range(raw["port"]),
        weight=_range(raw["weight"]),
        max_fails=_range(raw["max_fails"]),
        fail_timeout=_range(raw["fail_timeout"]),
        max_conns=_range(raw["max_conns"]),
        defaults=dict(raw["defaults"]),
        max_body_default=raw["max_body"]["default"],
        max_body_min=raw["max_body"]["min"],
        max_batch=raw["max_batch"],
    )
