"""The local agent: its node, its services and checks, and the runners that keep checks honest.

Registrations made through /v1/agent/... go to the agent's local state and are synced
to the catalog at once (one raft apply each). Check updates follow
agent/local/state.go UpdateCheck: a status change is written immediately; an
output-only change is kept locally and written back after ``check_update_interval``
(Consul's default 5m, staggered). TTL checks turn critical with "TTL expired" when not
refreshed in time; HTTP and TCP checks are really probed on their interval.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass, field

from syncer.devconsul.checks import run_probe
from syncer.devconsul.decode import VALID_STATUSES, CheckDef, ServiceDef
from syncer.devconsul.errors import HTTPError
from syncer.devconsul.model import DEFAULT_WEIGHTS, Check, Node, Service
from syncer.devconsul.state import Store
from syncer.devconsul.validation import go_duration, is_ipv4, unknown_service, validate_service

SERF_CHECK = "serfHealth"
SERVICE_MAINT_PREFIX = "_service_maintenance:"
NODE_MAINT = "_node_maintenance"
MIN_REAP_TIMEOUT = 60.0
MIN_INTERVAL = 1.0


@dataclass
class Runner:
    """Agent-side state of one check: TTL deadline, probe schedule, deferred output sync."""

    check_id: str
    definition: CheckDef
    deadline: float | None = None
    next_probe: float | None = None
    probing: bool = False
    last_output: str = ""
    deferred_at: float | None = None
    critical_since: float | None = None
    extra: dict[str, str] = field(default_factory=dict)


class LocalAgent:
    def __init__(
        self,
        store: Store,
        *,
        node_name: str = "dev-node",
        address: str = "127.0.0.1",
        datacenter: str = "dc1",
        version: str = "1.20.0",
        check_update_interval: float = 300.0,
        reap_interval: float = 30.0,
        register_consul_service: bool = True,
    ) -> None:
        self.store = store
        self.node_name = node_name
        self.address = address
        self.datacenter = datacenter
        self.version = version
        self.node_id = str(uuid.uuid4())
        self.check_update_interval = check_update_interval
        self.reap_interval = reap_interval
        self.register_consul_service = register_consul_service
        self.runners: dict[str, Runner] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_reap = time.monotonic() + reap_interval

    # Lifecycle ------------------------------------------------------------------------------
    def boot(self) -> None:
        """What a fresh single-server agent writes: its node, serfHealth, the consul service."""
        # A real first boot spends a dozen raft entries on internal state (raft configuration,
        # autopilot, CA, ...) before the node shows up; start past them.
        with self.store.lock:
            self.store.raft_index = max(self.store.raft_index, 10)
        tagged = {"lan": self.address, "lan_ipv4": self.address, "wan": self.address, "wan_ipv4": self.address}
        node = Node(
            self.node_name,
            self.node_id,
            self.address,
            self.datacenter,
            tagged,
            {"consul-network-segment": "", "consul-version": self.version},
        )
        with self.store.write() as txn:
            self.store.ensure_node(txn, node)
            self.store.ensure_check(
                txn,
                Check(
                    self.node_name,
                    SERF_CHECK,
                    "Serf Health Status",
                    status="passing",
                    output="Agent alive and reachable",
                ),
            )
        if self.register_consul_service:
            meta = {
                "consul-version": self.version,
                "grpc_port": "8502",
                "grpc_tls_port": "8503",
                "non_voter": "false",
                "raft_version": "3",
                "read_replica": "false",
                "serf_protocol_current": "2",
                "serf_protocol_max": "5",
                "serf_protocol_min": "1",
                "version": self.version,
            }
            with self.store.write() as txn:
                self.store.ensure_service(
                    txn, Service(self.node_name, "consul", "consul", tags=[], meta=meta, port=8300)
                )
        self._thread = threading.Thread(target=self._loop, name="devconsul-agent", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # Views --------------------------------------------------------------------------------------
    def services(self) -> list[Service]:
        with self.store.lock:
            return [s.clone() for s in self.store.services_of_node(self.node_name) if s.agent]

    def service(self, service_id: str) -> Service | None:
        with self.store.lock:
            svc = self.store.services.get((self.node_name, service_id))
            return svc.clone() if svc is not None and svc.agent else None

    def checks(self) -> list[Check]:
        with self.store.lock:
            return [c.clone() for (n, _), c in self.store.checks.items() if n == self.node_name and c.agent]

    def check(self, check_id: str) -> Check | None:
        with self.store.lock:
            chk = self.store.checks.get((self.node_name, check_id))
            return chk.clone() if chk is not None and chk.agent else None

    # Service registration -------------------------------------------------------------------------
    def register_service(self, sdef: ServiceDef, replace_existing_checks: bool = False) -> None:
        validate_service(sdef)
        weights = dict(sdef.weights) if sdef.weights else dict(DEFAULT_WEIGHTS)
        tagged = dict(sdef.tagged_addresses)
        if is_ipv4(sdef.address):
            tagged.setdefault("lan_ipv4", {"Address": sdef.address, "Port": sdef.port})
            tagged.setdefault("wan_ipv4", {"Address": sdef.address, "Port": sdef.port})
        elif ":" in sdef.address:
            tagged.setdefault("lan_ipv6", {"Address": sdef.address, "Port": sdef.port})
            tagged.setdefault("wan_ipv6", {"Address": sdef.address, "Port": sdef.port})
        svc = Service(
            self.node_name,
            sdef.id,
            sdef.name,
            tags=sdef.tags,
            address=sdef.address,
            tagged_addresses=tagged,
            meta=sdef.meta,
            port=sdef.port,
            socket_path=sdef.socket_path,
            weights=weights,
            enable_tag_override=sdef.enable_tag_override,
            kind=sdef.kind,
            proxy=sdef.proxy,
            connect=sdef.connect,
            agent=True,
        )
        with self.store.write() as txn:
            old_checks = {
                cid: c
                for (n, cid), c in self.store.checks.items()
                if n == self.node_name and c.service_id == sdef.id and c.agent
            }
            self.store.ensure_service(txn, svc)
            keep: set[str] = set()
            for i, cdef in enumerate(sdef.checks):
                check_id = cdef.check_id or f"service:{sdef.id}" + (f":{i + 1}" if len(sdef.checks) > 1 else "")
                keep.add(check_id)
                previous = self.store.checks.get((self.node_name, check_id))
                check = self._new_check(check_id, cdef, cdef.name or f"Service '{sdef.name}' check", sdef.id)
                if previous is not None:  # re-registration keeps status and output (checkStateSnapshot)
                    check.status, check.output = previous.status, previous.output
                    check.local_output = previous.local_output
                self.store.ensure_check(txn, check)
                self._arm(check_id, cdef, fresh=previous is None, status=check.status)
            if replace_existing_checks:
                for check_id in set(old_checks) - keep:
                    self.store.delete_check(txn, self.node_name, check_id)
                    self.runners.pop(check_id, None)
        self._wake.set()

    def deregister_service(self, service_id: str) -> None:
        with self.store.write() as txn:
            if self.store.services.get((self.node_name, service_id)) is None:
                raise unknown_service(service_id)
            for (node, check_id), chk in list(self.store.checks.items()):
                if node == self.node_name and chk.service_id == service_id:
                    self.runners.pop(check_id, None)
            self.store.delete_service(txn, self.node_name, service_id)

    def require_service(self, service_id: str) -> Service:
        svc = self.service(service_id)
        if svc is None:
            raise unknown_service(service_id)
        return svc

    # Check registration ------------------------------------------------------------------------------
    def register_check(self, cdef: CheckDef) -> None:
        if not cdef.name:
            raise HTTPError(400, "Missing check name")
        if cdef.status and cdef.status not in VALID_STATUSES:
            raise HTTPError(400, "Bad check status")
        try:
            cdef.validate()
        except ValueError as exc:
            raise HTTPError(400, f"Invalid check: {exc}") from None
        check_id = cdef.check_id or cdef.name
        with self.store.write() as txn:
            if cdef.service_id and self.service(cdef.service_id) is None:
                raise HTTPError(404, f'ServiceID "{cdef.service_id}" does not exist')
            previous = self.store.checks.get((self.node_name, check_id))
            check = self._new_check(check_id, cdef, cdef.name, cdef.service_id)
            self.store.ensure_check(txn, check)
            self._arm(check_id, cdef, fresh=previous is None, status=check.status)
        self._wake.set()

    def deregister_check(self, check_id: str) -> None:
        with self.store.write() as txn:
            self.require_check(check_id)
            self.runners.pop(check_id, None)
            self.store.delete_check(txn, self.node_name, check_id)

    def require_check(self, check_id: str) -> Check:
        chk = self.check(check_id)
        if chk is None:
            raise HTTPError(
                404, f'Unknown check ID "{check_id}". Ensure that the check ID is passed, not the check name.'
            )
        return chk

    def update_ttl(self, check_id: str, status: str, output: str) -> None:
        """agent.updateTTLCheck: only TTL checks accept pass/warn/fail/update."""
        with self.store.lock:
            self.require_check(check_id)
            runner = self.runners.get(check_id)
            if runner is None or runner.definition.kind != "ttl":
                raise HTTPError(500, f'CheckID "{check_id}" does not have associated TTL')
            runner.deadline = time.monotonic() + runner.definition.ttl
            runner.last_output = output
            self.set_status(check_id, status, output)
        self._wake.set()

    def set_status(self, check_id: str, status: str, output: str) -> None:
        """local.State.UpdateCheck: immediate write on status change, deferred on output change."""
        with self.store.lock:
            current = self.store.checks.get((self.node_name, check_id))
            runner = self.runners.get(check_id)
            if current is None:
                return
            local_output = current.local_output if current.local_output is not None else current.output
            if current.status == status and local_output == output:
                return
            if runner is not None:
                runner.critical_since = (runner.critical_since or time.monotonic()) if status == "critical" else None
            if self.check_update_interval > 0 and current.status == status:
                current.local_output = output
                if runner is not None and runner.deferred_at is None:
                    stagger = random.uniform(0, self.check_update_interval)
                    runner.deferred_at = time.monotonic() + self.check_update_interval / 2 + stagger
                return
            updated = current.clone()
            updated.status, updated.output, updated.local_output = status, output, None
            if runner is not None:
                runner.deferred_at = None
            with self.store.write() as txn:
                self.store.ensure_check(txn, updated)

    # Maintenance ---------------------------------------------------------------------------------------
    def service_maintenance(self, service_id: str, enable: bool, reason: str) -> None:
        svc = self.service(service_id)
        if svc is None:
            raise HTTPError(404, f'No service registered with ID "{service_id}"')
        check_id = SERVICE_MAINT_PREFIX + service_id
        if not enable:
            with self.store.write() as txn:
                self.store.delete_check(txn, self.node_name, check_id)
            return
        notes = reason or (
            "Maintenance mode is enabled for this service, but no reason was provided. This is a default message."
        )
        with self.store.write() as txn:
            if (self.node_name, check_id) not in self.store.checks:
                self.store.ensure_check(
                    txn,
                    Check(
                        self.node_name,
                        check_id,
                        "Service Maintenance Mode",
                        notes=notes,
                        service_id=service_id,
                        type="maintenance",
                        agent=True,
                    ),
                )

    def node_maintenance(self, enable: bool, reason: str) -> None:
        notes = reason or (
            "Maintenance mode is enabled for this node, but no reason was provided. This is a default message."
        )
        with self.store.write() as txn:
            if not enable:
                self.store.delete_check(txn, self.node_name, NODE_MAINT)
            elif (self.node_name, NODE_MAINT) not in self.store.checks:
                self.store.ensure_check(
                    txn,
                    Check(
                        self.node_name, NODE_MAINT, "Node Maintenance Mode", notes=notes, type="maintenance", agent=True
                    ),
                )

    # Internals ---------------------------------------------------------------------------------------
    def _new_check(self, check_id: str, cdef: CheckDef, name: str, service_id: str) -> Check:
        return Check(
            self.node_name,
            check_id,
            name,
            status=cdef.status or "critical",
            notes=cdef.notes,
            service_id=service_id,
            type=cdef.kind,
            interval=go_duration(cdef.interval),
            timeout=go_duration(cdef.timeout),
            agent=True,
        )

    def _arm(self, check_id: str, cdef: CheckDef, fresh: bool, status: str) -> None:
        now = time.monotonic()
        runner = Runner(check_id, cdef, critical_since=now if status == "critical" else None)
        old = self.runners.get(check_id)
        if old is not None and not fresh:
            runner.last_output, runner.critical_since = old.last_output, old.critical_since
        if cdef.kind == "ttl":
            runner.deadline = now + cdef.ttl
        elif cdef.kind in ("http", "tcp"):
            cdef.interval = max(cdef.interval, MIN_INTERVAL)  # checks.MinInterval: Consul clamps to 1s
            runner.next_probe = now + random.uniform(0, cdef.interval)  # Consul staggers the first run
        self.runners[check_id] = runner

    def _loop(self) -> None:
        while not self._stop.is_set():
            next_due = self._tick(time.monotonic())
            self._wake.wait(timeout=max(0.0, min(next_due - time.monotonic(), 1.0)))
            self._wake.clear()

    def _tick(self, now: float) -> float:
        """Fire every due timer; return when the next one is due."""
        next_due = now + 1.0
        with self.store.lock:
            for runner in list(self.runners.values()):
                if runner.deadline is not None and runner.deadline <= now:
                    runner.deadline = None  # fires once until refreshed, like CheckTTL
                    prefix = "TTL expired"
                    output = (
                        f"{prefix} (last output before timeout follows): {runner.last_output}"
                        if runner.last_output
                        else prefix
                    )
                    self.set_status(runner.check_id, "critical", output)
                if runner.deferred_at is not None and runner.deferred_at <= now:
                    runner.deferred_at = None
                    self._flush_output(runner.check_id)
                if runner.next_probe is not None and runner.next_probe <= now and not runner.probing:
                    runner.probing = True
                    runner.next_probe = now + runner.definition.interval
                    threading.Thread(target=self._probe, args=(runner,), daemon=True).start()
                for due in (runner.deadline, runner.deferred_at, runner.next_probe):
                    if due is not None:
                        next_due = min(next_due, due)
            if now >= self._next_reap:
                self._next_reap = now + self.reap_interval
                self._reap(now)
        return next_due

    def _flush_output(self, check_id: str) -> None:
        current = self.store.checks.get((self.node_name, check_id))
        if current is None or current.local_output is None:
            return
        updated = current.clone()
        updated.output, updated.local_output = current.local_output, None
        with self.store.write() as txn:
            self.store.ensure_check(txn, updated)

    def _probe(self, runner: Runner) -> None:
        try:
            status, output = run_probe(runner.definition)
            with self.store.lock:
                if self.runners.get(runner.check_id) is runner:
                    self.set_status(runner.check_id, status, output)
        finally:
            runner.probing = False

    def _reap(self, now: float) -> None:
        """DeregisterCriticalServiceAfter: drop services whose check stayed critical too long."""
        for runner in list(self.runners.values()):
            limit = runner.definition.deregister_after
            if not limit or runner.critical_since is None:
                continue
            if now - runner.critical_since >= max(limit, MIN_REAP_TIMEOUT):
                chk = self.store.checks.get((self.node_name, runner.check_id))
                if chk is not None and chk.service_id:
                    self.deregister_service(chk.service_id)
