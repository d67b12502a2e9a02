"""The api strategy: push only what changed to the dynamic-upstream endpoint in nginx.

The sink remembers what the endpoint acknowledged (per upstream: version and servers)
and the endpoint's generation. It re-reads everything (``GET /upstreams``) at start, when
the generation changes (nginx restarted), after a surprise, and when the agent's
anti-entropy timer asks; the agent's frequent probe reads only the O(1) ``GET /summary``.
Many changed upstreams go out in a few ``PATCH /upstreams`` batches (within the
endpoint's max_batch and max_body), one changed upstream as a ``PUT``. Each write carries
the version we last saw (``If-Match``), so a concurrent writer is noticed, never
overwritten blindly. Failures are per upstream: one refused upstream (400 past the
server limit, 500 with the shared dict full) is logged and reported in the result while
every other upstream is pushed. After every successful push the acknowledged state is
written to the snapshot file nginx loads on a cold start.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import structlog
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from syncer import limits
from syncer.config import ApiSettings, ConfigError
from syncer.effects import files
from syncer.effects.admin_http import (
    Acked,
    AdminClient,
    AdminError,
    AdminUnavailable,
    Outcome,
    VersionConflict,
    digest,
)
from syncer.model import Desired, Server, Upstream
from syncer.planning.diff import UpstreamChange, diff_upstream
from syncer.retry import backoff
from syncer.sinks.api_routes import RoutesPusher
from syncer.sinks.base import ApplyResult

log = structlog.get_logger("syncer.api")

# What the endpoint assumes for a field we leave unset (nginx's own defaults).
DEFAULTS = limits.load().defaults


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


@dataclass
class _Round:
    """What one apply did so far: per-upstream outcomes, for the result and the metrics."""

    pushed: list[UpstreamChange] = field(default_factory=list)
    failed: dict[str, tuple[int | None, str]] = field(default_factory=dict)  # name -> (status, why)
    steps: list[tuple[str, str]] = field(default_factory=list)


def _entry_size(name: str, entry: dict[str, Any]) -> int:
    return len(name) + len(json.dumps(entry, separators=(",", ":"))) + 8


class ApiSink:
    mode = "api"

    def __init__(self, settings: ApiSettings, client: AdminClient | None = None) -> None:
        self.settings = settings
        if settings.token_file is not None:
            problem = files.private_file_problem(settings.token_file)
            if problem:
                raise ConfigError("api.token_file", str(settings.token_file), problem)
        self._client = client or AdminClient(settings.endpoint, settings.token or "", settings.timeout)
        self._generation: str | None = None
        self._acked: dict[str, Acked] | None = None
        self._limits = limits.load()
        self._max_body = self._limits.max_body_default
        self._max_batch = self._limits.max_batch
        # Upstreams found equal to what the endpoint acknowledged, by object identity: at
        # 2,000 upstreams re-diffing every one on every change cost 68 ms (bench.scale).
        self._in_sync: dict[str, tuple[Upstream, Acked]] = {}
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
        summary = self._retrying()(self._client.summary)
        self._max_body = summary.max_body or self._max_body
        self._max_batch = summary.max_batch or self._max_batch
        generation, acked = self._retrying()(self._client.list)
        if self._generation is not None and generation != self._generation:
            log.warning("nginx restarted (new generation); re-pushing everything", generation=generation)
        self._generation, self._acked = generation, acked
        self._routes.forget()

    def needs_reconcile(self) -> bool:
        """A cheap probe the agent runs on a timer: has nginx's state moved without us?

        One constant-size answer (``GET /summary``): the generation (a restart), and the
        number and digest of upstream versions compared with what we acknowledged (a
        write by someone else).
        """
        try:
            summary = self._client.summary()
        except AdminError:
            return False  # the next apply reports the failure; the probe stays quiet
        if summary.generation != self._generation:
            return True
        if self._acked is not None and (
            summary.upstreams != len(self._acked)
            or summary.digest != digest({n: a.version for n, a in self._acked.items()})
        ):
            log.warning("endpoint state changed outside syncer; reconciling")
            return True
        return False

    def _plan(self, desired: Desired) -> list[tuple[Upstream, UpstreamChange]]:
        assert self._acked is not None
        plan = []
        in_sync: dict[str, tuple[Upstream, Acked]] = {}
        for upstream in desired.sorted():
            have = self._acked.get(upstream.name)
            known = self._in_sync.get(upstream.name)
            if have is not None and known is not None and known[0] is upstream and known[1] is have:
                in_sync[upstream.name] = known  # the same objects compared equal last time
                continue
            want = explicit(upstream)
            change = diff_upstream(upstream.name, acked_upstream(upstream.name, have) if have else None, want)
            if change is not None:
                plan.append((upstream, change))
            elif have is not None:
                in_sync[upstream.name] = (upstream, have)
        self._in_sync = in_sync
        return plan

    @staticmethod
    def _payload(upstream: Upstream) -> dict[str, Any]:
        payload: dict[str, Any] = {"servers": [to_payload(s) for s in upstream.servers]}
        if upstream.empty:
            payload["allow_empty"] = True  # Consul confirmed: no healthy instance (answers 502)
        return payload

    def _chunks(self, entries: dict[str, dict[str, Any]]) -> list[dict[str, dict[str, Any]]]:
        """Batches within the endpoint's max_batch and max_body (with room for the envelope)."""
        budget = self._max_body - 64
        chunks: list[dict[str, dict[str, Any]]] = []
        current: dict[str, dict[str, Any]] = {}
        size = 0
        for name, entry in entries.items():
            cost = _entry_size(name, entry)
            if current and (size + cost > budget or len(current) >= self._max_batch):
                chunks.append(current)
                current, size = {}, 0
            current[name] = entry
            size += cost
        if current:
            chunks.append(current)
        return chunks

    def _send(self, entries: dict[str, dict[str, Any]]) -> dict[str, Outcome]:
        """Push ``entries``; one upstream at a time when there is one (PUT), else batches."""
        outcomes: dict[str, Outcome] = {}
        if len(entries) == 1:
            ((name, entry),) = entries.items()
            if_match = entry.pop("if_match", None)
            try:
                generation, acked = self._retrying()(self._client.put, name, entry, if_match)
            except VersionConflict as exc:
                return {name: Outcome(409, exc.version, str(exc))}
            except AdminError as exc:
                if exc.status is None:  # no answer at all: not this upstream's fault
                    raise
                return {name: Outcome(exc.status, error=str(exc))}
            self._check_generation(generation)
            return {name: Outcome(200, acked.version)}
        for chunk in self._chunks(entries):
            generation, results = self._retrying()(self._client.batch, chunk)
            self._check_generation(generation)
            outcomes.update(results)
        return outcomes

    def _check_generation(self, generation: str | None) -> None:
        if generation is not None and self._generation is not None and generation != self._generation:
            # nginx restarted between our read and this write: everything else is stale.
            self._generation = generation
            raise AdminUnavailable("nginx restarted during the push")

    def _push_all(self, plan: list[tuple[Upstream, UpstreamChange]], done: _Round) -> None:
        """Push every planned upstream; failures stay per upstream. A version conflict is
        re-read and tried once more; anything else is reported (the agent retries)."""
        assert self._acked is not None
        todo = {upstream.name: (upstream, change) for upstream, change in plan}
        for attempt in (1, 2):
            entries: dict[str, dict[str, Any]] = {}
            for name, (upstream, _) in todo.items():
                entry = self._payload(upstream)
                have = self._acked.get(name)
                if have is not None:
                    entry["if_match"] = have.version
                entries[name] = entry
            sent = {name: list(entry["servers"]) for name, entry in entries.items()}
            outcomes = self._send(entries)
            conflicts: dict[str, tuple[Upstream, UpstreamChange]] = {}
            for name, (upstream, change) in todo.items():
                outcome = outcomes.get(name, Outcome(500, error="no answer for this upstream"))
                if outcome.status == 200 and outcome.version is not None:
                    self._acked[name] = Acked(outcome.version, tuple(sent[name]))
                    done.pushed.append(change)
                    done.steps.append(("push", "ok"))
                    done.failed.pop(name, None)
                elif outcome.status == 409 and attempt == 1:
                    done.steps.append(("push", "conflict"))
                    current = self._client.get(name)  # someone else wrote: re-read, then once more
                    if current is None:
                        self._acked.pop(name, None)
                    else:
                        self._acked[name] = current
                    conflicts[name] = (upstream, change)
                else:
                    done.failed[name] = (outcome.status, outcome.error or f"status {outcome.status}")
            if not conflicts:
                return
            todo = conflicts

    def apply(self, desired: Desired, *, reconcile: bool = False) -> ApplyResult:
        done = _Round()
        try:
            if self._acked is None or reconcile:
                self._refresh()
            plan = self._plan(desired)
            try:
                self._push_all(plan, done)
            except AdminUnavailable:
                # No answer, or nginx restarted mid-push: re-read everything and go again once.
                done.steps.append(("push", "retried"))
                self._refresh()
                plan = self._plan(desired)
                self._push_all(plan, done)
            # After the pools they point at. Without routing the endpoint's /routes is never
            # touched (an agent run without --routing must not depend on it).
            if (desired.routing or self._routes.holds_tables()) and self._routes.sync(desired.routing):
                done.steps.append(("routes", "ok"))
        except AdminError as exc:
            self._acked = None  # we no longer know what nginx holds: re-read next time
            rejected = exc.status is not None and 400 <= exc.status < 500 and exc.status != 409
            done.steps.append(("push", "rejected" if rejected else "failed"))
            if done.pushed or ("routes", "ok") in done.steps:
                self._write_snapshot()
            return ApplyResult("rejected" if rejected else "failed", tuple(done.pushed), str(exc), tuple(done.steps))
        if done.pushed or ("routes", "ok") in done.steps:
            self._write_snapshot()
        if done.failed:
            return self._partial(done, len(plan))
        if done.pushed or ("routes", "ok") in done.steps:
            return ApplyResult("pushed", tuple(done.pushed), steps=tuple(done.steps))
        return ApplyResult("unchanged")

    def _partial(self, done: _Round, planned: int) -> ApplyResult:
        """Some upstreams were refused: the others went through. Each refusal is logged
        with its reason; a 4xx (the payload itself) waits for a new change, anything else
        (dict full, endpoint trouble) is worth a retry."""
        failures = []
        retryable = False
        for name, (status, why) in sorted(done.failed.items()):
            refused = status is not None and 400 <= status < 500
            retryable = retryable or not refused
            done.steps.append(("push", "refused" if refused else "failed"))
            log.error("upstream not pushed; nginx keeps its previous servers", service=name, status=status, error=why)
            failures.append((name, why))
        detail = f"{len(failures)} of {planned} upstream(s) not pushed: " + "; ".join(
            f"{name}: {why}" for name, why in failures[:5]
        )
        if len(failures) > 5:
            detail += f"; and {len(failures) - 5} more"
        return ApplyResult(
            "failed" if retryable else "rejected",
            tuple(done.pushed),
            detail,
            tuple(done.steps),
            failed_upstreams=tuple(failures),
        )

    def _plan_or_empty(self, desired: Desired) -> list[tuple[Upstream, UpstreamChange]]:
        return self._plan(desired) if self._acked is not None else []

    @staticmethod
    def _snapshot_failed(exc: OSError) -> None:
        log.error("cannot write the snapshot file", error=str(exc))

    def _write_snapshot(self) -> None:
        if self._snapshot is None or self._acked is None:
            return
        generation, acked = self._generation, dict(self._acked)  # Acked values are never mutated

        def serialise() -> bytes:  # on the writer's thread: 20+ ms at 2,000 upstreams
            body = {
                "generation": generation,
                "upstreams": {
                    name: {"version": a.version, "servers": list(a.servers), "hash_on": a.hash_on}
                    for name, a in sorted(acked.items())
                },
            }
            return json.dumps(body, indent=1, sort_keys=True).encode()

        self._snapshot.submit(serialise)

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
