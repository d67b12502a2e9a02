"""The catalog and KV store: one lock, one condition, a raft-like index, per-resource indexes.

Every write is one "raft apply" and takes the next index, even when it changes nothing
(as Consul's FSM does). Per-resource indexes (the ``index`` table: ``nodes``,
``services``, ``checks``, ``kvs``, ``tombstones``, ``service.<name>``,
``service_last_extinction``) only move when a row really changes, following
agent/consul/state/catalog.go: an idempotent re-registration takes a raft index but
wakes no watcher. Blocking readers wait on the condition and re-run their query only
when a write touched a key they watch.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from syncer.devconsul.errors import RPCError
from syncer.devconsul.model import Check, KVEntry, Node, Service

T = TypeVar("T")
_POLL = 0.2  # how often a blocked reader checks that its client is still there


@dataclass
class ConfigEntryRecord:
    """One config entry as written (Consul's field names), with its raft indexes."""

    kind: str
    name: str
    body: dict[str, Any]
    create_index: int = 0
    modify_index: int = 0

    def to_json(self) -> dict[str, Any]:
        return {**self.body, "Kind": self.kind, "Name": self.name,
                "CreateIndex": self.create_index, "ModifyIndex": self.modify_index}  # fmt: skip


class ClientGone(Exception):
    """The connection of a blocked reader went away (or an agent-down fault cut it)."""


class Txn:
    def __init__(self, store: Store, idx: int) -> None:
        self.store = store
        self.idx = idx
        self.touched: set[str] = set()

    def bump(self, table: str, touch: str | None = None) -> None:
        self.store.table[table] = self.idx
        self.touched.add(touch or table)

    def bump_service(self, name: str) -> None:
        self.bump(f"service.{name.lower()}", f"svc:{name.lower()}")


class Store:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.raft_index = 0
        self.nodes: dict[str, Node] = {}
        self.services: dict[tuple[str, str], Service] = {}
        self.checks: dict[tuple[str, str], Check] = {}
        self.kv: dict[str, KVEntry] = {}
        self.tombstones: dict[str, int] = {}
        # Config entries by (kind, name); reads and blocking use the "config-entries" table index.
        self.config_entries: dict[tuple[str, str], ConfigEntryRecord] = {}
        self.table: dict[str, int] = {}
        self.epoch = 0  # bumped by reset_index: blocked readers return at once
        self.closed = False
        self.waiting = 0  # blocking queries parked right now (observable by tests and /_dev/stats)
        self._seq = 0
        self._changes: deque[tuple[int, frozenset[str]]] = deque(maxlen=4096)

    # Writes ---------------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[Txn]:
        """One raft apply: the body must validate before it mutates (no rollback)."""
        with self.cond:
            txn = Txn(self, self.raft_index + 1)
            yield txn
            self.raft_index = txn.idx
            if txn.touched:
                self._seq += 1
                self._changes.append((self._seq, frozenset(txn.touched)))
            self.cond.notify_all()

    def kick(self) -> None:
        """Wake every blocked reader so it re-checks faults and shutdown."""
        with self.cond:
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def _read_views(self) -> tuple[dict[str, list[Service]], dict[tuple[str, str], list[Check]]]:
        """Services by lowered name and checks by (node, service ID), for the read paths.

        Consul answers these from memdb indexes; scanning every service and check per
        instance made one health read take 53 ms at 6,000 instances. Rebuilt when a write
        (a raft index, a reset, a change in size) happened since; callers hold the lock.
        """
        key = (self.raft_index, self.epoch, len(self.services), len(self.checks))
        if getattr(self, "_views_key", None) != key:
            by_name: dict[str, list[Service]] = {}
            for svc in self.services.values():
                by_name.setdefault(svc.name.lower(), []).append(svc)
            by_owner: dict[tuple[str, str], list[Check]] = {}
            for (node, _), check in self.checks.items():
                by_owner.setdefault((node, check.service_id or ""), []).append(check)
            for checks in by_owner.values():
                checks.sort(key=lambda c: c.check_id)
            self._views = (by_name, by_owner)
            self._views_key = key
        return self._views

    def services_named(self, name: str) -> list[Service]:
        return sorted(self._read_views()[0].get(name.lower(), []), key=lambda s: (s.node, s.id))

    def checks_of(self, node: str, service_id: str = "") -> list[Check]:
        """A node's own checks (``service_id`` empty) or one instance's, sorted by check ID."""
        return list(self._read_views()[1].get((node, service_id), []))

    def services_of_node(self, node: str) -> list[Service]:
        return [s for (n, _), s in self.services.items() if n == node]

    def service_exists(self, name: str) -> bool:
        lowered = name.lower()
        return any(s.name.lower() == lowered for s in self.services.values())

    def ensure_node(self, txn: Txn, node: Node) -> None:
        existing = self.nodes.get(node.name)
        if existing is not None and existing.same(node):
            return
        node.create_index = existing.create_index if existing else txn.idx
        node.modify_index = txn.idx
        self.nodes[node.name] = node
        txn.bump("nodes")
        # Node data is part of every health entry of its services.
        for svc in self.services_of_node(node.name):
            txn.bump_service(svc.name)

    def ensure_service(self, txn: Txn, svc: Service) -> None:
        if svc.node not in self.nodes:
            raise RPCError("Missing node registration")
        existing = self.services.get((svc.node, svc.id))
        if existing is not None and existing.same(svc):
            existing.agent = existing.agent or svc.agent
            return
        svc.create_index = existing.create_index if existing else txn.idx
        svc.modify_index = txn.idx
        self.services[(svc.node, svc.id)] = svc
        txn.bump("services")
        txn.bump("nodes")
        txn.bump_service(svc.name)
        if existing is not None and existing.name.lower() != svc.name.lower():
            self._after_service_gone(txn, existing.name)

    def ensure_check(self, txn: Txn, check: Check) -> None:
        if check.node not in self.nodes:
            raise RPCError("Missing node registration")
        if check.status == "":
            check.status = "critical"
        svc = self.services.get((check.node, check.service_id)) if check.service_id else None
        if check.service_id:
            if svc is None:
                raise RPCError("Missing service registration")
            check.service_name = svc.name
            check.service_tags = None if svc.tags is None else list(svc.tags)
        existing = self.checks.get((check.node, check.check_id))
        if existing is not None and existing.same(check):
            existing.local_output = check.local_output
            existing.agent = existing.agent or check.agent
            return
        check.create_index = existing.create_index if existing else txn.idx
        check.modify_index = txn.idx
        self.checks[(check.node, check.check_id)] = check
        txn.bump("checks")
        if svc is not None:
            txn.bump_service(svc.name)
        else:
            for other in self.services_of_node(check.node):
                txn.bump_service(other.name)

    def delete_check(self, txn: Txn, node: str, check_id: str) -> None:
        existing = self.checks.pop((node, check_id), None)
        if existing is None:
            return
        if existing.service_id:
            txn.bump_service(existing.service_name)
        else:
            for svc in self.services_of_node(node):
                txn.bump_service(svc.name)
            txn.bump("services")
        txn.bump("checks")

    def delete_service(self, txn: Txn, node: str, service_id: str) -> None:
        svc = self.services.get((node, service_id))
        if svc is None:
            return
        for (check_node, check_id), check in list(self.checks.items()):
            if check_node == node and check.service_id == service_id:
                self.delete_check(txn, node, check_id)
        txn.bump("checks")
        del self.services[(node, service_id)]
        txn.bump("services")
        txn.bump("nodes")
        self._after_service_gone(txn, svc.name)

    def _after_service_gone(self, txn: Txn, name: str) -> None:
        txn.touched.add(f"svc:{name.lower()}")
        if self.service_exists(name):
            txn.bump_service(name)
        else:
            # Consul drops the service.<name> index and records the extinction.
            self.table.pop(f"service.{name.lower()}", None)
            txn.bump("service_last_extinction", f"svc:{name.lower()}")

    def delete_node(self, txn: Txn, node: str) -> None:
        if node not in self.nodes:
            return
        for svc in self.services_of_node(node):
            self.delete_service(txn, node, svc.id)
        for check_node, check_id in [k for k in self.checks if k[0] == node]:
            self.delete_check(txn, check_node, check_id)
        del self.nodes[node]
        txn.bump("nodes")

    # Index reads ------------------------------------------------------------------------
    def index_of(self, *tables: str) -> int:
        return max((self.table.get(t, 0) for t in tables), default=0)

    def service_index(self, name: str, checks: bool) -> int:
        """maxIndexForService: extinction index for a vanished service, else service.<name>."""
        if name.lower() not in self._read_views()[0] and "service_last_extinction" in self.table:
            return self.table["service_last_extinction"]
        key = f"service.{name.lower()}"
        if key in self.table:
            return self.table[key]
        return self.index_of("nodes", "services", *(["checks"] if checks else []))

    def kv_table_index(self) -> int:
        return self.index_of("kvs", "tombstones")

    def kv_prefix_index(self, prefix: str) -> int:
        """kvsListTxn: newest entry or tombstone under the prefix, else the table index."""
        if prefix == "":
            return self.kv_table_index()
        lindex = max((e.modify_index for k, e in self.kv.items() if k.startswith(prefix)), default=0)
        gindex = max((i for k, i in self.tombstones.items() if k.startswith(prefix)), default=0)
        return max(lindex, gindex) or self.kv_table_index()

    # Snapshot restore fault ---------------------------------------------------------------
    def reset_index(self, to: int) -> None:
        """Pretend a snapshot taken at ``to`` was restored: every index is capped at ``to``."""
        if to < 0:
            raise ValueError("index must be >= 0")
        with self.cond:
            self.raft_index = to
            records: list[Any] = [
                *self.nodes.values(),
                *self.services.values(),
                *self.checks.values(),
                *self.kv.values(),
                *self.config_entries.values(),
            ]
            for record in records:
                record.create_index = min(record.create_index, to)
                record.modify_index = min(record.modify_index, to)
            self.table = {k: min(v, to) for k, v in self.table.items()}
            self.tombstones = {k: min(v, to) for k, v in self.tombstones.items()}
            self.epoch += 1
            self.cond.notify_all()

    # Blocking reads ------------------------------------------------------------------------
    def block(
        self,
        run: Callable[[], T],
        done: Callable[[T], bool],
        watch: Callable[[str], bool],
        timeout: float,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> T:
        """Run ``run`` until ``done`` says the result moved, a watched key changes to a
        result that is done, the store is reset, or ``timeout`` seconds pass."""
        with self.cond:
            result = run()
            if done(result) or timeout <= 0:
                return result
            deadline = time.monotonic() + timeout
            seq, epoch = self._seq, self.epoch
            self.waiting += 1
            try:
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self.closed or self.epoch != epoch:
                        return run()
                    self.cond.wait(min(remaining, _POLL))
                    if cancelled():
                        raise ClientGone()
                    touched = self._touched_since(seq, watch)
                    seq = self._seq
                    if touched:
                        result = run()
                        if done(result):
                            return result
            finally:
                self.waiting -= 1

    def _touched_since(self, seq: int, watch: Callable[[str], bool]) -> bool:
        if seq == self._seq:
            return False
        if self._changes and self._changes[0][0] > seq + 1:
            return True  # the log was trimmed past us: re-run to be safe
        for change_seq, keys in reversed(self._changes):
            if change_seq <= seq:
                break
            if any(watch(key) for key in keys):
                return True
        return False
