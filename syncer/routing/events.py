"""What the config-entry Sources deliver to the agent's Store."""

from __future__ import annotations

from dataclasses import dataclass

from syncer.routing.entries import Entry


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
