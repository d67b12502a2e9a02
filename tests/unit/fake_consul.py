"""An in-memory stand-in for ConsulClient, for in-process Watcher and Agent tests.

It keeps Consul's index rules where the Watcher depends on them: one raft index per write,
a service's health index is its last write, ``/v1/catalog/services`` moves on service
writes and ``/v1/health/state/any`` on check writes, and blocking reads wait until their
table's index passes the one sent. It counts every request and the most connections in
use at once, so tests can assert the budget.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from syncer.discovery.client import Answer, ConsulError


@dataclass
class Instance:
    service: str
    id: str
    port: int
    node: str = "n1"
    status: str = "passing"
    has_check: bool = True
    tags: list[str] = field(default_factory=list)


class FakeConsul:
    base_url = "http://fake-consul"

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.index = 1
        self.instances: dict[str, Instance] = {}
        self.service_index: dict[str, int] = {}
        self.services_table = 1
        self.checks_table = 1
        self.node_checks: dict[str, str] = {}  # node -> serfHealth status
        self.requests: dict[str, int] = {}
        self.in_use = 0
        self.max_in_use = 0
        self.fail_reads: dict[str, int] = {}  # service -> status to answer with
        self.down = False  # the leader probe fails (and every read)

    # --- writes (the test's side) --------------------------------------------------------

    def _write(self, service: str | None, checks: bool, services: bool = True) -> None:
        self.index += 1
        if service:
            self.service_index[service] = self.index
        if services:
            self.services_table = self.index
        if checks:
            self.checks_table = self.index
        self.cond.notify_all()

    def register(self, inst: Instance) -> None:
        with self.cond:
            self.instances[inst.id] = inst
            self._write(inst.service, checks=inst.has_check)

    def move(self, instance_id: str, port: int) -> None:
        """Re-register on another port, same check: only the catalog moves."""
        with self.cond:
            self.instances[instance_id].port = port
            self._write(self.instances[instance_id].service, checks=False)

    def set_status(self, instance_id: str, status: str) -> None:
        with self.cond:
            inst = self.instances[instance_id]
            inst.status = status
            self._write(inst.service, checks=True, services=False)

    def set_node(self, node: str, status: str) -> None:
        with self.cond:
            self.node_checks[node] = status
            self.index += 1
            self.checks_table = self.index
            for inst in self.instances.values():
                if inst.node == node:
                    self.service_index[inst.service] = self.index
            self.cond.notify_all()

    def restart_empty(self) -> None:
        """Consul lost its state: indexes start again near zero."""
        with self.cond:
            self.instances.clear()
            self.index = 2
            self.service_index.clear()
            self.services_table = self.checks_table = 2
            self.cond.notify_all()

    # --- the ConsulClient surface the Watcher uses ----------------------------------------

    def _enter(self, path: str) -> None:
        with self.cond:
            self.requests[path] = self.requests.get(path, 0) + 1
            self.in_use += 1
            self.max_in_use = max(self.max_in_use, self.in_use)
            if self.down:
                self.in_use -= 1
                raise ConsulError("Consul at fake unreachable: refused")

    def _leave(self) -> None:
        with self.cond:
            self.in_use -= 1

    def _block(self, table: str, index: int, wait: float) -> None:
        deadline = time.monotonic() + min(wait, 2.0)
        while index >= 1 and getattr(self, table) <= index and not self.down:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.cond.wait(remaining)

    def _passing(self, inst: Instance) -> bool:
        return inst.status == "passing" and self.node_checks.get(inst.node, "passing") == "passing"

    def health_service(self, name: str, index: int = 0, wait: float = 300.0, passing: bool = True) -> Answer:
        self._enter(f"health/service/{name}")
        try:
            with self.cond:
                if name in self.fail_reads:
                    raise ConsulError(f"{self.fail_reads[name]} from Consul: boom", status=self.fail_reads[name])
                body = [
                    {
                        "Node": {"Node": i.node, "Address": "10.0.0.1"},
                        "Service": {"ID": i.id, "Service": i.service, "Address": "10.0.0.1", "Port": i.port},
                        "Checks": [],
                    }
                    for i in sorted(self.instances.values(), key=lambda i: i.id)
                    if i.service == name and (self._passing(i) or not passing)
                ]
                return Answer(self.service_index.get(name, self.services_table), body, True, 0, False)
        finally:
            self._leave()

    def health_state(self, index: int = 0, wait: float = 300.0) -> Answer:
        self._enter("health/state/any")
        try:
            with self.cond:
                self._block("checks_table", index, wait)
                body: list[dict[str, Any]] = [
                    {
                        "Node": i.node,
                        "CheckID": f"service:{i.id}",
                        "ServiceID": i.id,
                        "ServiceName": i.service,
                        "Status": i.status,
                    }
                    for i in self.instances.values()
                    if i.has_check
                ]
                body += [{"Node": n, "CheckID": "serfHealth", "Status": s} for n, s in self.node_checks.items()]
                return Answer(self.checks_table, body, True, 0, False)
        finally:
            self._leave()

    def catalog_services(self, index: int = 0, wait: float = 300.0) -> Answer:
        self._enter("catalog/services")
        try:
            with self.cond:
                self._block("services_table", index, wait)
                body: dict[str, list[str]] = {}
                for i in self.instances.values():
                    body.setdefault(i.service, []).extend(t for t in i.tags if t not in body[i.service])
                return Answer(self.services_table, body, True, 0, False)
        finally:
            self._leave()

    def checks_index(self, timeout: float) -> int | None:
        self._enter("health/state/critical")
        self._leave()
        with self.cond:
            return self.checks_table

    def close(self) -> None:
        pass

    def reads(self, name: str) -> int:
        with self.cond:
            return self.requests.get(f"health/service/{name}", 0)
