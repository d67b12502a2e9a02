"""The interface both strategies implement, and what applying a state reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from syncer.model import Desired
from syncer.planning.diff import UpstreamChange

Action = Literal["unchanged", "reloaded", "pushed", "rejected", "failed"]
# What a sink did on the way, for metrics: ("nginx_test", "ok"), ("reload", "failed"), ("push", "conflict")...
Step = tuple[str, str]


@dataclass(frozen=True)
class ApplyResult:
    action: Action
    changes: tuple[UpstreamChange, ...] = ()
    detail: str = ""
    steps: tuple[Step, ...] = ()
    # Upstreams this apply could not push, with the reason, while the others went through
    # (api mode: the endpoint refused or could not store them): (name, reason).
    failed_upstreams: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return self.action in ("unchanged", "reloaded", "pushed")

    @property
    def retryable(self) -> bool:
        """Worth trying again with the same state (nginx or the endpoint had a bad moment)."""
        return self.action == "failed"


class Sink(Protocol):
    mode: str

    def apply(self, desired: Desired, *, reconcile: bool = False) -> ApplyResult:
        """Make nginx hold ``desired``. ``reconcile``: re-read what nginx has first."""
        ...

    def needs_reconcile(self) -> bool:
        """A cheap probe run on a timer: has nginx's state moved without us (restart, edit)?"""
        ...

    def preview(self, desired: Desired) -> str:
        """What ``apply`` would do, as text for ``--dry-run``; changes nothing."""
        ...

    def close(self) -> None: ...
