"""One small type per kind of Consul query (consul-template's "dependencies").

A source knows how to ask (``fetch``) and how to read the answer (``read``); the loop in
``watch.py`` owns every blocking-query rule and is the same for all of them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from syncer.discovery.client import Answer, ConsulClient
from syncer.discovery.events import ServiceChanged
from syncer.discovery.normalize import AnswerInvalid, Rules, health_entries
from syncer.model import rendered_view


class Source(Protocol):
    key: str
    kind: str  # the endpoint, for metrics labels

    def fetch(self, index: int, wait: float) -> Answer: ...

    def read(self, answer: Answer, index: int) -> tuple[object, object]:
        """(fingerprint to compare with the last answer, the event to emit if it differs)."""
        ...


class HealthSource:
    """``/v1/health/service/<name>``: ``?passing``, or every non-critical when warning is kept."""

    def __init__(self, client: ConsulClient, service: str, rules: Rules) -> None:
        self.key = f"health:{service}"
        self.kind = "health_service"
        self.service = service
        self._client = client
        self._rules = rules

    def fetch(self, index: int, wait: float) -> Answer:
        return self._client.health_service(
            self.service, index=index, wait=wait, passing=not self._rules.include_warning
        )

    def read(self, answer: Answer, index: int) -> tuple[object, ServiceChanged]:
        result = health_entries(self.service, answer.body, self._rules)
        fingerprint = (rendered_view(result.servers), result.rejections, result.skipped_warning)
        event = ServiceChanged(
            self.service, result.servers, result.rejections, result.skipped_warning, index, time.monotonic()
        )
        return fingerprint, event


# --- change detectors: two blocking queries that stand for every watched service --------


@dataclass(frozen=True)
class ChecksSeen:
    """What ``/v1/health/state/any`` says, reduced to what decides health.

    ``services``: per service name, its checks as (node, check ID, service ID, status);
    ``nodes``: per node, its node-level checks (serfHealth, maintenance) the same way.
    Output and ModifyIndex are left out: an HTTP check's output changes without a change
    of health, and re-reading a service for it would be wasted work.
    """

    services: Mapping[str, frozenset[tuple[str, str, str, str]]]
    nodes: Mapping[str, frozenset[tuple[str, str, str, str]]]
    index: int
    at: float


@dataclass(frozen=True)
class CatalogSeen:
    """``/v1/catalog/services``: every service name with its tags, and the index they moved to."""

    tags: Mapping[str, frozenset[str]]
    index: int
    at: float


class HealthStateSource:
    """The check detector: one blocking query whose index moves on any check change."""

    key = "health:state"
    kind = "health_state"

    def __init__(self, client: ConsulClient) -> None:
        self._client = client

    def fetch(self, index: int, wait: float) -> Answer:
        return self._client.health_state(index=index, wait=wait)

    def read(self, answer: Answer, index: int) -> tuple[object, ChecksSeen]:
        if not isinstance(answer.body, list):
            raise AnswerInvalid("/v1/health/state/any did not answer a JSON list")
        services: dict[str, set[tuple[str, str, str, str]]] = {}
        nodes: dict[str, set[tuple[str, str, str, str]]] = {}
        for check in answer.body:
            if not isinstance(check, dict):
                continue  # one odd entry must not blind the detector to the others
            node, service = str(check.get("Node") or ""), str(check.get("ServiceName") or "")
            row = (node, str(check.get("CheckID") or ""), str(check.get("ServiceID") or ""), str(check.get("Status")))
            (services.setdefault(service, set()) if service else nodes.setdefault(node, set())).add(row)
        seen = ChecksSeen(
            {k: frozenset(v) for k, v in services.items()},
            {k: frozenset(v) for k, v in nodes.items()},
            index,
            time.monotonic(),
        )
        return (seen.services, seen.nodes), seen


class CatalogDetectorSource:
    """The registration detector: ``/v1/catalog/services``, whose index moves on any
    service registration, deregistration or change (address, port, meta, tags)."""

    key = "catalog:services"
    kind = "catalog_services"

    def __init__(self, client: ConsulClient) -> None:
        self._client = client

    def fetch(self, index: int, wait: float) -> Answer:
        return self._client.catalog_services(index=index, wait=wait)

    def read(self, answer: Answer, index: int) -> tuple[object, CatalogSeen]:
        if not isinstance(answer.body, dict):
            raise AnswerInvalid("/v1/catalog/services did not answer a JSON object")
        tags = {
            str(name): frozenset(str(t) for t in (value or []) if isinstance(t, str))
            for name, value in answer.body.items()
            if isinstance(value, list | type(None))
        }
        seen = CatalogSeen(tags, index, time.monotonic())
        # The index is part of the fingerprint: a move with the same names and tags is
        # exactly the case (an instance's port changed) the watcher must hear about.
        return (tags, index), seen
