"""Sources (the protocol of syncer/discovery/sources.py) for the config entries.

One blocking watch per kind on ``GET /v1/config/<kind>``. Each entry is parsed on its
own: a refused entry (bad regex, injection attempt, Consul-invalid) leaves its last good
version in force and nothing else is affected; the refusal names kind, entry, field
and reason.
"""

from __future__ import annotations

import json
import time

from syncer.discovery.client import Answer, ConsulClient
from syncer.routing.entries import ConsulRefusal, Entry, EntryError, parse_entry
from syncer.routing.events import ConfigEntriesChanged


class ConfigEntrySource:
    def __init__(self, client: ConsulClient, kind: str) -> None:
        self.key = f"config:{kind}"
        self.kind = "config_entries"
        self.entry_kind = kind
        self._client = client
        self._good: dict[str, Entry] = {}  # last good version of each entry, by name
        self._seen_ignored: dict[str, tuple[str, ...]] = {}

    def fetch(self, index: int, wait: float) -> Answer:
        return self._client.config_entries(self.entry_kind, index=index, wait=wait)

    def read(self, answer: Answer, index: int) -> tuple[object, ConfigEntriesChanged]:
        entries, refused, ignored = read_entries(self.entry_kind, answer.body, self._good, self._seen_ignored)
        event = ConfigEntriesChanged(self.entry_kind, entries, refused, ignored, index, time.monotonic())
        return (entries, refused), event


def _q(name: str) -> str:
    return json.dumps(name)


def read_entries(
    kind: str, body: object, good: dict[str, Entry], seen_ignored: dict[str, tuple[str, ...]]
) -> tuple[tuple[Entry, ...], tuple[str, ...], tuple[str, ...]]:
    """Parse a list answer; ``good`` and ``seen_ignored`` carry state between answers."""
    refused: list[str] = []
    ignored: list[str] = []
    present: set[str] = set()
    if not isinstance(body, list):
        return tuple(good[n] for n in sorted(good)), (f"{kind}: answer is not a list, previous entries kept",), ()
    for raw in body:
        name = raw.get("Name") if isinstance(raw, dict) else None
        label = name if isinstance(name, str) else "?"
        present.add(label)
        try:
            entry = parse_entry(raw)
            if entry.kind != kind:
                raise EntryError(kind, label, "Kind", f"{entry.kind} listed under {kind}")
        except (EntryError, ConsulRefusal) as exc:
            keeps = "last good version kept" if label in good else "not applied"
            line = str(exc) if isinstance(exc, EntryError) else f"{kind} {_q(label)}: {exc}"
            refused.append(f"{line} ({keeps})")
            continue
        good[entry.name] = entry
        if entry.ignored and seen_ignored.get(entry.name) != entry.ignored:
            ignored.extend(f"{kind} {_q(entry.name)}: ignored {note}" for note in entry.ignored)
        seen_ignored[entry.name] = entry.ignored
    for name in [n for n in good if n not in present]:  # deleted in Consul
        del good[name]
        seen_ignored.pop(name, None)
    return tuple(good[n] for n in sorted(good)), tuple(refused), tuple(ignored)
