"""The api strategy: push only what changed to the dynamic-upstream endpoint in nginx.

The sink remembers what the endpoint acknowledged (per upstream: version and servers)
and the endpoint's generation. It re-reads everything (``GET /upstreams``) at start, when
the generation changes (nginx restarted), after a version conflict or a surprise, and
when the agent's anti-entropy timer asks. Each PUT carries ``If-Match`` with the version
we last saw, so a concurrent writer is noticed, never overwritten blindly. After every
successful push the acknowledged state is written to the snapshot file nginx loads on
a cold start.
"""

from __future__ import annotations

import json
from typing import Any

import structlog
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from syncer.config import ApiSettings
from syncer.effects import files
from syncer.effects.admin_http import Acked, AdminClient, AdminError, AdminUnavailable, VersionConflict
from syncer.model import Desired, Server, Upstream
from syncer.planning.diff import UpstreamChange, diff_upstream
from syncer.retry import backoff
from syncer.sinks.api_routes import RoutesPusher
from syncer.sinks.base import ApplyResult

log = structlog.get_logger("syncer.api")

# What the endpoint assumes for a field we leave unset (nginx's own defaults).
DEFAULTS = {"max_fails": 1, "fail_timeout": 10, "max_conns": 0}


def to_payload(server: Server) -> dict[str, Any]:
    return {
        "address": server.address,
        "port": server.port,
        "weight": server.weight,
        "max_fails": DEFAULTS["max_fails"] if server.max_fails is None else server.max_fails,
        "fail_timeout": DEFAULTS["fail_timeout"] if server.fail_timeout is None else server.fail_timeout,
        "max_conns": server.max_conns or 0,
        "backup": server.backup,
        "down": server.down,
    }


def from_payload(item: dict[str, Any]) -> Server:
    """An acknowledged server as a model value, for diffs and logs (all fields explicit)."""
    return Server(
        address=str(item.get("address", "")),
        port=int(item.get("port", 0)),
        weight=int(item.get("weight", 1)),
        max_fails=int(item.get("max_fails", DEFAULTS["max_fails"])),
        fail_timeout=int(item.get("fail_timeout", DEFAULTS["fail_timeout"])),
        max_conns=int(item.get("max_conns", 0)) or None,
        backup=bool(item.get("backup", False)),
        down=bool(item.get("down", False)),
    )


def explicit(upstream: Upstream) -> Upstream:
    """The same upstream with nginx's defaults written out, comparable with what is acked."""
    return Upstream(upstream.name, tuple(sorted(from_payload(to_payload(s)) for s in upstream.servers)))


def acked_upstream(name: str, acked: Acked) -> Upstream:
    return Upstream(name, tuple(sorted(from_payload(s) for s in acked.servers)))


class ApiSink:
    mode = "api"

    def __init__(self, settings: ApiSettings, client: AdminClient | None = None) -> None:
        self.settings = settings
        self._client = client or AdminClient(settings.endpoint, settings.token or "", settings.timeout)
        self._generation: str | None = None
        self._acked: dict[str, Acked] | None = None
        self._routes = RoutesPusher(self._client)  # routing tables (docs/routing.md)
        # The snapshot is written off the apply path: a slow fsync must not delay the
        # next push (measured in bench/: up to 450 ms on a busy disk).
        self._snapshot = (
            files.LatestWriter(settings.snapshot_file, default_mode=0o640, on_error=self._snapshot_failed)
            if settings.snapshot_file is not None
            else None
        )

    def _retrying(self) -> Retrying:
        return Retrying(
            retry=retry_if_exception_type(AdminUnavailable),
            wait=backoff(0.05, 1.0, jitter=0.05),  # within one sync: keep the main loop responsive
            stop=stop_after_attempt(3),
            reraise=True,
        )

    def _refresh(self) -> None:
        generation, acked = self._retrying()(self._client.list)
        if self._generation is not None and generation != self._generation:
            log.warning("nginx restarted (new generation); re-pushing everything", generation=generation)
        self._generation, self._acked = generation, acked
        self._routes.forget()

    def needs_reconcile(self) -> bool:
        """A cheap probe the agent runs on a timer: did nginx restart since we last looked?"""
        try:
            generation, acked = self._client.list()
        except AdminError:
            return False  # the next apply reports the failure; the probe stays quiet
        if generation != self._generation:
            return True
        if self._acked is not None and {n: a.version for n, a in acked.items()} != {
            n: a.version for n, a in self._acked.items()
        }:
            log.warning("endpoint state changed outside syncer; reconciling")
            return True
        return False

    def _plan(self, desired: Desired) -> list[tuple[Upstream, UpstreamChange]]:
        assert self._acked is not None
        plan = []
        for upstream in desired.sorted():
            want = explicit(upstream)
            have = self._acked.get(upstream.name)
            change = diff_upstream(upstream.name, acked_upstream(upstream.name, have) if have else None, want)
            if change is not None:
                plan.append((upstream, change))
        return plan

    def _push(self, upstream: Upstream) -> None:
        assert self._acked is not None
        have = self._acked.get(upstream.name)
        payload: dict[str, Any] = {"servers": [to_payload(s) for s in upstream.servers]}
        if upstream.empty:
            payload["allow_empty"] = True  # Consul confirmed: no healthy instance (answers 502)
        generation, acked = self._retrying()(self._client.put, upstream.name, payload, have.version if have else None)
        if generation is not None and self._generation is not None and generation != self._generation:
            # nginx restarted between our read and this write: everything else is stale.
            self._generation = generation
            raise AdminUnavailable("nginx restarted during the push")
        self._acked[upstream.name] = acked

    def apply(self, desired: Desired, *, reconcile: bool = False) -> ApplyResult:
        steps: list[tuple[str, str]] = []
        try:
            if self._acked is None or reconcile:
                self._refresh()
            plan = self._plan(desired)
            for upstream, _change in plan:
                try:
                    self._push(upstream)
                except (VersionConflict, AdminUnavailable) as exc:
                    # Someone else wrote, or nginx restarted: re-read and try once more.
                    steps.append(("push", "conflict" if isinstance(exc, VersionConflict) else "retried"))
                    self._refresh()
                    self._push(upstream)
                steps.append(("push", "ok"))
            if self._routes.sync(desired.routing):  # after the pools they point at
                steps.append(("routes", "ok"))
        except AdminError as exc:
            changes = tuple(change for _, change in self._plan_or_empty(desired))
            self._acked = None  # we no longer know what nginx holds: re-read next time
            rejected = exc.status is not None and 400 <= exc.status < 500 and exc.status != 409
            steps.append(("push", "rejected" if rejected else "failed"))
            return ApplyResult("rejected" if rejected else "failed", changes, str(exc), tuple(steps))
        changes = tuple(change for _, change in plan)
        if plan or ("routes", "ok") in steps:
            self._write_snapshot()
            return ApplyResult("pushed", changes, steps=tuple(steps))
        return ApplyResult("unchanged")

    def _plan_or_empty(self, desired: Desired) -> list[tuple[Upstream, UpstreamChange]]:
        return self._plan(desired) if self._acked is not None else []

    @staticmethod
    def _snapshot_failed(exc: OSError) -> None:
        log.error("cannot write the snapshot file", error=str(exc))

    def _write_snapshot(self) -> None:
        if self._snapshot is None or self._acked is None:
            return
        body = {
            "generation": self._generation,
            "upstreams": {
                name: {"version": a.version, "servers": list(a.servers), "hash_on": a.hash_on}
                for name, a in sorted(self._acked.items())
            },
        }
        self._snapshot.submit(json.dumps(body, indent=1, sort_keys=True).encode())

    def preview(self, desired: Desired) -> str:
        lines = [f"# syncer dry run (api mode): endpoint {self.settings.endpoint}"]
        try:
            self._refresh()
        except AdminError as exc:
            lines.append(f"# cannot read the endpoint ({exc}); showing the full desired state")
            self._acked = {}
        else:
            lines.append(f"# endpoint generation {self._generation}")
        plan = {u.name: c for u, c in self._plan(desired)}
        for upstream in desired.sorted():
            change = plan.get(upstream.name)
            if change is None:
                lines.append(f"upstream {upstream.name}: unchanged ({len(upstream.servers)} servers)")
                continue
            verb = "create" if change.created else "PUT"
            lines.append(
                f"upstream {upstream.name}: would {verb} {len(upstream.servers)} servers "
                f"(+{len(change.added)} -{len(change.removed)} ~{len(change.changed)})"
            )
            lines.extend(f"  + {s.endpoint} weight={s.weight}" for s in change.added)
            lines.extend(f"  - {s.endpoint}" for s in change.removed)
            for before, after in change.changed:
                fields = [
                    f"{k} {getattr(before, k)}->{getattr(after, k)}"
                    for k in ("weight", "max_fails", "fail_timeout", "max_conns", "backup", "down")
                    if getattr(before, k) != getattr(after, k)
                ]
                lines.append(f"  ~ {after.endpoint} {' '.join(fields)}")
            if upstream.empty:
                lines.append("    (no healthy instance: pushed empty on purpose, nginx answers 502)")
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        if self._snapshot is not None:
            self._snapshot.close()
        self._client.close()
