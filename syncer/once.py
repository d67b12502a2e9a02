"""``syncer once``: read every watched service once, apply (or print), exit.

The same normalization, planning and sink as the agent; only the reads differ: plain
(non-blocking) queries, retried with backoff until ``consul.once_timeout``.
"""

from __future__ import annotations

import sys
from typing import Protocol, TextIO, TypeVar

import structlog
from tenacity import Retrying, retry_if_exception_type, stop_after_delay

from syncer.agent import log_rejections
from syncer.config import Settings
from syncer.discovery.client import Answer, ConsulClient, ConsulError
from syncer.discovery.normalize import AnswerInvalid, Rules, catalog_service_names, health_entries
from syncer.discovery.sources import HealthSource
from syncer.discovery.watch import check_trust
from syncer.model import Server
from syncer.planning.desired import desired_state
from syncer.retry import backoff
from syncer.routing.follow import RoutingFollower
from syncer.sinks import registry
from syncer.sinks.registry import make_sink

log = structlog.get_logger("syncer.once")
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Query(Protocol[T_co]):
    def __call__(self) -> T_co: ...


class OnceFailed(Exception):
    """One line for the operator; ``syncer once`` exits 1 with it."""


def _read(settings: Settings, what: str, query: Query[T]) -> T:
    retrying = Retrying(
        retry=retry_if_exception_type((ConsulError, AnswerInvalid)),
        wait=backoff(0.25, 5.0, jitter=0.25),
        stop=stop_after_delay(settings.consul.once_timeout),
        reraise=True,
    )
    try:
        return retrying(query)
    except (ConsulError, AnswerInvalid) as exc:
        raise OnceFailed(f"{what}: {exc} (gave up after {settings.consul.once_timeout:g}s)") from exc


def run_once(settings: Settings, dry_run: bool, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    client = ConsulClient(settings.consul)
    rules = Rules(
        include_warning=settings.consul.include_warning,
        allow_hostnames=registry.dialect(settings.mode).accepts_hostnames,
    )
    try:
        names = set(settings.services.names)
        if settings.services.tags:

            def catalog() -> set[str]:
                answer = client.catalog_services()
                check_trust(answer, settings.consul.max_last_contact)
                found, rejections = catalog_service_names(answer.body, settings.services.tags)
                log_rejections(tuple(rejections))
                return found

            names |= _read(settings, "reading the catalog", catalog)
        routing = RoutingFollower() if settings.services.routing else None  # docs/routing.md
        if routing is not None:
            for source in routing.sources(client):
                answer = _read(settings, f"reading {source.entry_kind} entries", lambda s=source: s.fetch(0, 0.0))
                names |= routing.handle(source.read(answer, 0)[1])
        services: dict[str, tuple[Server, ...]] = {}
        for name in sorted(names):

            def health(name: str = name) -> Answer:
                answer = HealthSource(client, name, rules).fetch(index=0, wait=0.0)  # a plain read
                check_trust(answer, settings.consul.max_last_contact)
                return answer

            answer = _read(settings, f"reading service {name!r}", health)
            normalized = health_entries(name, answer.body, rules)
            log_rejections(normalized.rejections)
            services[name] = normalized.servers
    finally:
        client.close()

    desired = routing.plan(services) if routing else desired_state(services)
    sink = make_sink(settings)
    try:
        if dry_run:
            out.write(sink.preview(desired))
            return 0
        result = sink.apply(desired, reconcile=True)
    finally:
        sink.close()
    for change in result.changes:
        log.info("upstream changed", action=result.action, **change.summary())
    if not result.ok:
        raise OnceFailed(f"{result.action}: {result.detail}")
    log.info("once", action=result.action, upstreams=len(desired.upstreams), changed=len(result.changes))
    return 0
