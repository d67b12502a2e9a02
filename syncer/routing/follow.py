"""What the agent keeps about routing between events: the entries per kind (from the
config-entry Sources), the last planned state (whose tables a broken chain keeps), and
which refusals and notes were already logged (each is logged once, and counted)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import structlog
from prometheus_client import CollectorRegistry, Counter

from syncer.discovery.client import ConsulClient
from syncer.model import Desired, Server
from syncer.planning.desired import plan
from syncer.routing.compile import RoutingConfig, referenced_services
from syncer.routing.entries import KINDS, Entry
from syncer.routing.events import ConfigEntriesChanged, GrayRulesChanged
from syncer.routing.kv_rules import GrayRules
from syncer.routing.kv_source import KVSource
from syncer.routing.sources import ConfigEntrySource

log = structlog.get_logger("syncer.routing")


class RoutingFollower:
    KINDS = KINDS  # one blocking watch per kind

    def __init__(self, registry: CollectorRegistry | None = None, kv_prefix: str = "syncer/") -> None:
        self.kv_prefix = kv_prefix
        self.gray = GrayRules()  # KV stages 1-4 (docs/kv-layout.md)
        self.entries: dict[str, tuple[Entry, ...]] = {}
        self.previous: Desired | None = None
        self._logged: set[str] = set()
        self.ignored = Counter(
            "syncer_routing_fields_ignored_total",
            "Config entry fields nginx cannot honour, logged once per entry version",
            ["kind"],
            registry=registry,
        )
        self.refused = Counter(
            "syncer_routing_refusals_total",
            "Config entries refused and routing chains that could not be compiled (last good kept)",
            ["kind"],
            registry=registry,
        )

    def sources(self, client: ConsulClient) -> list[ConfigEntrySource | KVSource]:
        return [*(ConfigEntrySource(client, kind) for kind in KINDS), KVSource(client, self.kv_prefix)]

    def config(self) -> RoutingConfig:
        config = RoutingConfig.of(e for kind in KINDS for e in self.entries.get(kind, ()))
        return dataclasses.replace(config, gray=self.gray)

    def handle(self, event: ConfigEntriesChanged | GrayRulesChanged) -> frozenset[str]:
        """Take one answer; returns every service routing points at (to watch too)."""
        if isinstance(event, GrayRulesChanged):  # the KV Source logged each refused key once
            self.gray = event.rules
            for rejection in event.rejections:
                if rejection.key not in self._logged:
                    self._logged.add(rejection.key)
                    self.refused.labels("kv").inc()
            return frozenset(referenced_services(self.config()))
        self.entries[event.kind] = event.entries
        for line in event.refused:
            self._once("config entry refused", line, kind=event.kind)
        for line in event.ignored:
            self.ignored.labels(event.kind).inc()
            log.warning("config entry field ignored", detail=line)
        return frozenset(referenced_services(self.config()))

    def plan(self, services: Mapping[str, tuple[Server, ...]]) -> Desired:
        desired, report = plan(services, self.config(), self.previous)
        if report is not None:
            for entry, why in sorted(report.errors.items()):
                self._once("routing chain broken; last good table kept", f"{entry}: {why}", kind="chain")
            for note in report.notes:
                self._once("routing entry not applied", note)
        self.previous = desired
        return desired

    def _once(self, message: str, detail: str, *, kind: str | None = None) -> None:
        if detail in self._logged:
            return
        self._logged.add(detail)
        if kind is not None:
            self.refused.labels(kind).inc()
            log.error(message, detail=detail)
        else:
            log.warning(message, detail=detail)
