"""What the config-entry Sources deliver to the agent's Store."""

from __future__ import annotations

from dataclasses import dataclass

from syncer.routing.entries import Entry
from syncer.routing.kv_rules import GrayRules


@dataclass(frozen=True)
class ConfigEntriesChanged:
    """Every usable entry of one kind. ``refused``: log lines for entries syncer refused
    (each keeps its last good version in ``entries``, if it had one); ``ignored``: log
    lines for fields nginx cannot honour, for entries that changed in this answer."""

    kind: str
    entries: tuple[Entry, ...]
    refused: tuple[str, ...]
    ignored: tuple[str, ...]
    index: int
    at: float


# --- KV gray rules (issue 11, docs/kv-layout.md) ---------------------------------------


@dataclass(frozen=True)
class KVRejection:
    key: str
    field: str
    reason: str
    kept_last_good: bool


@dataclass(frozen=True)
class GrayRulesChanged:
    """The gray rules (KV) differ from the last ones delivered (or are the first).
    ``rejections``: keys refused in this answer (each keeps its last good value, if any)."""

    rules: GrayRules
    rejections: tuple[KVRejection, ...]
    index: int
    at: float  # monotonic time the answer arrived
