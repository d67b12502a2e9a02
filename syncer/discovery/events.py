"""What the watches tell the agent. Plain frozen values passed through a queue."""

from __future__ import annotations

from dataclasses import dataclass

from syncer.discovery.normalize import Rejection
from syncer.model import Server


@dataclass(frozen=True)
class ServiceChanged:
    """A service's normalized healthy set differs from the last one delivered (or is the first)."""

    service: str
    servers: tuple[Server, ...]
    rejections: tuple[Rejection, ...]
    skipped_warning: int
    index: int
    at: float  # monotonic time the answer arrived


@dataclass(frozen=True)
class CatalogChanged:
    """The set of services selected by tag changed (or was read for the first time)."""

    names: frozenset[str]
    rejections: tuple[Rejection, ...]
    at: float


@dataclass(frozen=True)
class WatchFailed:
    key: str
    error: str
    status: int | None
    attempt: int
    at: float


@dataclass(frozen=True)
class WatchRecovered:
    """A watch that had failed got a good answer again."""

    key: str
    at: float


@dataclass(frozen=True)
class ConfirmRead:
    """The second, independent read that confirms (or not) a held sharp drop."""

    service: str
    servers: tuple[Server, ...] | None  # None: the read failed
    error: str
    at: float


@dataclass(frozen=True)
class ServiceReadFailed:
    """A targeted read of one service failed; it is retried with backoff by the watcher.

    A service that cannot be read must not hold back the others: the store counts it as
    answered for readiness and keeps its last good servers.
    """

    service: str
    error: str
    status: int | None
    at: float


@dataclass(frozen=True)
class ConsulStateReset:
    """Consul's index went below the highest one we have seen: its state was lost or
    restored from a snapshot (a restarted dev agent, a snapshot restore). What it answers
    next may be missing services that are about to be re-registered."""

    key: str
    high: int
    got: int
    at: float


Event = (
    ServiceChanged | CatalogChanged | WatchFailed | WatchRecovered | ConfirmRead | ServiceReadFailed | ConsulStateReset
)
