"""What /healthz says: ready after the first full sync; unhealthy when Consul has been
failing, or changes could not be applied, for longer than the configured grace. The
status names the cause, so the operator looks in the right place: a full disk is not
nginx refusing a change, and a refused token is not an unreachable Consul.

Pure bookkeeping driven by the agent's loop; time comes in as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

from syncer.sinks.base import ApplyResult

NGINX_REFUSING = "nginx refusing changes"


def apply_failure_cause(result: ApplyResult) -> str:
    """Why a sync pass failed, from what the sink did last (see ``ApplyResult.steps``)."""
    step, outcome = result.steps[-1] if result.steps else ("", "")
    if step == "nginx_test":
        return NGINX_REFUSING  # `nginx -t` refused the rendered file
    if step == "reload":
        return "nginx reload failing"  # the tested file is in place; signalling nginx failed
    if step == "push":
        # a 4xx is the endpoint refusing the payload; anything else is it being down or failing
        return NGINX_REFUSING if outcome == "rejected" else "nginx endpoint failing"
    if result.action == "rejected":
        return "template refusing the data"  # rendering failed before nginx saw anything
    return "cannot write the upstream file"  # disk full, read-only, missing folder: errno in detail


def consul_failure_cause(status: int | None) -> str:
    """What a failed Consul query says about Consul, from its HTTP status (None: no answer)."""
    if status is None:
        return "consul unreachable"
    if status in (401, 403):
        return "consul refusing the token"
    if status == 429:
        return "consul limiting requests"
    return "consul answering errors"


@dataclass(frozen=True)
class Verdict:
    ok: bool
    status: str
    detail: dict[str, object]


class HealthState:
    def __init__(self, consul_grace: float = 60.0, nginx_grace: float = 60.0) -> None:
        self.consul_grace = consul_grace
        self.nginx_grace = nginx_grace
        self.synced = False
        self.consul_failing_since: float | None = None
        self.nginx_failing_since: float | None = None
        self.last_consul_error = ""
        self.last_nginx_error = ""
        self.consul_cause = consul_failure_cause(None)
        self.nginx_cause = NGINX_REFUSING

    def consul_ok(self) -> None:
        self.consul_failing_since = None

    def consul_failed(self, now: float, error: str, status: int | None = None) -> None:
        if self.consul_failing_since is None:
            self.consul_failing_since = now
        self.last_consul_error = error
        self.consul_cause = consul_failure_cause(status)

    def applied(self) -> None:
        self.synced = True
        self.nginx_failing_since = None

    def apply_failed(self, now: float, error: str, cause: str = NGINX_REFUSING) -> None:
        if self.nginx_failing_since is None:
            self.nginx_failing_since = now
        self.last_nginx_error = error
        self.nginx_cause = cause

    def verdict(self, now: float) -> Verdict:
        detail: dict[str, object] = {"synced": self.synced}
        problems = []
        if self.consul_failing_since is not None:
            down = now - self.consul_failing_since
            detail["consul_failing_for"] = round(down, 1)
            detail["consul_error"] = self.last_consul_error
            if down > self.consul_grace:
                problems.append(self.consul_cause)
        if self.nginx_failing_since is not None:
            down = now - self.nginx_failing_since
            detail["nginx_failing_for"] = round(down, 1)
            detail["nginx_error"] = self.last_nginx_error
            if down > self.nginx_grace:
                problems.append(self.nginx_cause)
        if not self.synced:
            return Verdict(False, "starting", detail)
        if problems:
            return Verdict(False, ", ".join(problems), detail)
        return Verdict(True, "ok", detail)
