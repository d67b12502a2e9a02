"""What /healthz says: ready after the first full sync; unhealthy when Consul has been
unreachable, or nginx has refused changes, for longer than the configured grace.

Pure bookkeeping driven by the agent's loop; time comes in as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass


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

    def consul_ok(self) -> None:
        self.consul_failing_since = None

    def consul_failed(self, now: float, error: str) -> None:
        if self.consul_failing_since is None:
            self.consul_failing_since = now
        self.last_consul_error = error

    def applied(self) -> None:
        self.synced = True
        self.nginx_failing_since = None

    def apply_failed(self, now: float, error: str) -> None:
        if self.nginx_failing_since is None:
            self.nginx_failing_since = now
        self.last_nginx_error = error

    def verdict(self, now: float) -> Verdict:
        detail: dict[str, object] = {"synced": self.synced}
        problems = []
        if self.consul_failing_since is not None:
            down = now - self.consul_failing_since
            detail["consul_failing_for"] = round(down, 1)
            detail["consul_error"] = self.last_consul_error
            if down > self.consul_grace:
                problems.append("consul unreachable")
        if self.nginx_failing_since is not None:
            down = now - self.nginx_failing_since
            detail["nginx_failing_for"] = round(down, 1)
            detail["nginx_error"] = self.last_nginx_error
            if down > self.nginx_grace:
                problems.append("nginx refusing changes")
        if not self.synced:
            return Verdict(False, "starting", detail)
        if problems:
            return Verdict(False, ", ".join(problems), detail)
        return Verdict(True, "ok", detail)
