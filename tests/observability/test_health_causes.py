"""/healthz words the cause: each way a sink reports a failed pass, and each way a Consul
query fails, maps to its own status (the end-to-end cases are in test_healthz.py)."""

from __future__ import annotations

import pytest

from syncer.health import HealthState, apply_failure_cause, consul_failure_cause
from syncer.sinks.base import ApplyResult


@pytest.mark.parametrize(
    ("result", "cause"),
    [
        (
            ApplyResult("rejected", (), "nginx -t refused the new file", (("nginx_test", "refused"),)),
            "nginx refusing changes",
        ),
        (
            ApplyResult("failed", (), "reload failed: exit 1", (("nginx_test", "ok"), ("reload", "failed"))),
            "nginx reload failing",
        ),
        (ApplyResult("rejected", (), "400 bad server", (("push", "rejected"),)), "nginx refusing changes"),
        (
            ApplyResult("failed", (), "connection refused", (("push", "retried"), ("push", "failed"))),
            "nginx endpoint failing",
        ),
        (ApplyResult("rejected", (), "render failed, previous file kept: bad"), "template refusing the data"),
        (
            ApplyResult("failed", (), "cannot write /etc/nginx/conf.d/u.conf: [Errno 28] No space left on device"),
            "cannot write the upstream file",
        ),
    ],
)
def test_each_apply_failure_has_its_own_wording(result: ApplyResult, cause: str) -> None:
    assert apply_failure_cause(result) == cause


@pytest.mark.parametrize(
    ("status", "cause"),
    [
        (None, "consul unreachable"),
        (403, "consul refusing the token"),
        (401, "consul refusing the token"),
        (429, "consul limiting requests"),
        (500, "consul answering errors"),
    ],
)
def test_each_consul_failure_has_its_own_wording(status: int | None, cause: str) -> None:
    assert consul_failure_cause(status) == cause


def test_verdict_names_the_latest_cause_of_each_side() -> None:
    """Past both graces: both causes, comma-separated; the latest cause wins on each side."""
    health = HealthState(consul_grace=1.0, nginx_grace=1.0)
    health.applied()
    health.consul_failed(0.0, "connection refused")
    health.consul_failed(0.5, "403 ACL not found", status=403)
    health.apply_failed(0.0, "reload failed", cause="nginx reload failing")
    health.apply_failed(0.5, "[Errno 28] No space left on device", cause="cannot write the upstream file")
    verdict = health.verdict(2.0)
    assert not verdict.ok
    assert verdict.status == "consul refusing the token, cannot write the upstream file"
    assert verdict.detail["nginx_error"] == "[Errno 28] No space left on device"
