"""What changed between two states, per upstream: added, removed and re-parameterized servers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from syncer.model import Server, Upstream


@dataclass(frozen=True)
class UpstreamChange:
    name: str
    added: tuple[Server, ...] = ()
    removed: tuple[Server, ...] = ()
    changed: tuple[tuple[Server, Server], ...] = ()  # (before, after) for the same endpoint
    created: bool = False
    deleted: bool = False

    def summary(self) -> dict[str, object]:
        """For a log line: endpoints, not objects."""
        return {
            "service": self.name,  # one key for a service in every log line (a pool: service.subset)
            "added": [s.endpoint for s in self.added],
            "removed": [s.endpoint for s in self.removed],
            "changed": [after.endpoint for _, after in self.changed],
            **({"created": True} if self.created else {}),
            **({"deleted": True} if self.deleted else {}),
        }


def diff_upstream(name: str, before: Upstream | None, after: Upstream | None) -> UpstreamChange | None:
    old = {s.key: s for s in before.servers} if before else {}
    new = {s.key: s for s in after.servers} if after else {}
    change = UpstreamChange(
        name=name,
        added=tuple(new[k] for k in sorted(new.keys() - old.keys())),
        removed=tuple(old[k] for k in sorted(old.keys() - new.keys())),
        changed=tuple((old[k], new[k]) for k in sorted(old.keys() & new.keys()) if old[k] != new[k]),
        created=before is None and after is not None,
        deleted=before is not None and after is None,
    )
    if change.added or change.removed or change.changed or change.created or change.deleted:
        return change
    return None


def diff(before: Mapping[str, Upstream], after: Mapping[str, Upstream]) -> list[UpstreamChange]:
    changes = []
    for name in sorted(before.keys() | after.keys()):
        change = diff_upstream(name, before.get(name), after.get(name))
        if change is not None:
            changes.append(change)
    return changes
