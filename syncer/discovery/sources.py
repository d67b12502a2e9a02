"""One small type per kind of Consul query (consul-template's "dependencies").

A source knows how to ask (``fetch``) and how to read the answer (``read``); the loop in
``watch.py`` owns every blocking-query rule and is the same for all of them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

from syncer.discovery.client import Answer, ConsulClient
from syncer.discovery.events import CatalogChanged, ServiceChanged
from syncer.discovery.normalize import Rules, catalog_service_names, health_entries
from syncer.model import rendered_view


class Source(Protocol):
    key: str
    kind: str  # the endpoint, for metrics labels

    def fetch(self, index: int, wait: float) -> Answer: ...

    def read(self, answer: Answer, index: int) -> tuple[object, ServiceChanged | CatalogChanged]:
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


class CatalogSource:
    """``/v1/catalog/services``, reduced to the names that carry one of the selecting tags."""

    key = "catalog:services"
    kind = "catalog_services"

    def __init__(self, client: ConsulClient, tags: Sequence[str]) -> None:
        self._client = client
        self._tags = tuple(tags)

    def fetch(self, index: int, wait: float) -> Answer:
        return self._client.catalog_services(index=index, wait=wait)

    def read(self, answer: Answer, index: int) -> tuple[object, CatalogChanged]:
        names, rejections = catalog_service_names(answer.body, self._tags)
        frozen = frozenset(names)
        return (frozen, tuple(rejections)), CatalogChanged(frozen, tuple(rejections), time.monotonic())
