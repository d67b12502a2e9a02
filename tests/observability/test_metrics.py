"""/metrics on a running agent (`--metrics-listen 127.0.0.1:0`, the port read from the
"status endpoint listening" log line): every family the README lists, with its labels."""

from __future__ import annotations

import time

import pytest

from syncer.devconsul.server import DevConsul
from syncer.testing.backends import BackendFarm
from syncer.testing.consul import ConsulWriter
from syncer.testing.wait import wait_until
from tests.conftest import StartAgent
from tests.stack import (
    BOTH_MODES,
    HEALTH_PATH,
    Samples,
    Stack,
    metric,
    metrics_url,
    nudge,
    register,
    scrape,
    wait_event,
    wait_metric,
    write_config,
)


@pytest.mark.parametrize("stack", BOTH_MODES, indirect=True)
def test_metrics_cover_syncs_nginx_consul_and_held_drops(
    stack: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm, start_agent: StartAgent
) -> None:
    """After a sync, a change, a failed Consul query and a held drop, /metrics shows:
    instances per service, syncs and reloads/pushes by outcome, held drops by outcome, the
    last success time, Consul latency and errors, and the change-to-applied histogram."""
    config = write_config(stack.root / "m.toml", {"safety": {"drop_confirm_delay": 0.3}})
    register(consul, backends, "b1")
    register(consul, backends, "b2")
    agent = start_agent(stack.agent_args(dev_consul.address, "--config", str(config)))
    url = metrics_url(agent)
    stack.wait_serving(backends, {"b1", "b2"})
    register(consul, backends, "b3")
    stack.wait_serving(backends, {"b1", "b2", "b3"})
    dev_consul.faults.error(HEALTH_PATH, remaining=1)
    dev_consul.faults.empty(HEALTH_PATH, remaining=1)  # after the error: the retry reads "nothing"
    nudge(consul)
    wait_event(agent, "sharp drop not confirmed; applying the new read")

    s = wait_metric(url, "syncer_held_drops_total", service="web", outcome="recovered")
    applied = "reloaded" if stack.mode == "reload" else "pushed"
    assert metric(s, "syncer_instances", service="web") == 3
    assert metric(s, "syncer_syncs_total", outcome=applied) >= 2
    if stack.mode == "reload":
        assert metric(s, "syncer_reloads_total", outcome="ok") >= 2
        assert metric(s, "syncer_nginx_tests_total", outcome="ok") >= 2
    else:
        assert metric(s, "syncer_pushes_total", outcome="ok") >= 2
    assert metric(s, "syncer_held_drops_total", service="web", outcome="held") == 1
    assert metric(s, "syncer_held_drops_total", service="web", outcome="recovered") == 1
    assert abs(metric(s, "syncer_last_success_timestamp_seconds") - time.time()) < 60
    assert metric(s, "syncer_consul_request_duration_seconds_count", endpoint="health_state", blocking="true") >= 1
    assert metric(s, "syncer_consul_request_duration_seconds_count", endpoint="health_service", blocking="false") >= 1
    assert metric(s, "syncer_consul_errors_total", endpoint="health_service", kind="500") == 1
    assert metric(s, "syncer_change_to_applied_seconds_count", mode=stack.mode) >= 2
    assert metric(s, "syncer_change_to_applied_seconds_bucket", mode=stack.mode, le="+Inf") >= 2
    assert 0 < metric(s, "syncer_change_to_applied_seconds_sum", mode=stack.mode) < 30
    assert metric(s, "syncer_healthy") in (0, 1)


@pytest.mark.parametrize("stack", BOTH_MODES, indirect=True)
def test_change_to_applied_measures_one_change(
    stack: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm, start_agent: StartAgent
) -> None:
    """One registration adds one observation, no longer than the test itself took to see
    nginx serve it (it measures from the answer's arrival to nginx holding it)."""
    register(consul, backends, "b1")
    agent = start_agent(stack.agent_args(dev_consul.address))
    url = metrics_url(agent)
    stack.wait_serving(backends, {"b1"})
    before = scrape(url)
    count = metric(before, "syncer_change_to_applied_seconds_count", mode=stack.mode)
    total = metric(before, "syncer_change_to_applied_seconds_sum", mode=stack.mode)

    started = time.monotonic()
    register(consul, backends, "b2")
    stack.wait_serving(backends, {"b1", "b2"})
    seen = time.monotonic() - started

    def observed_once_more() -> Samples | None:
        samples = scrape(url)
        return samples if metric(samples, "syncer_change_to_applied_seconds_count", mode=stack.mode) > count else None

    after = wait_until(observed_once_more, message="the change observed")
    assert metric(after, "syncer_change_to_applied_seconds_count", mode=stack.mode) == count + 1
    observed = metric(after, "syncer_change_to_applied_seconds_sum", mode=stack.mode) - total
    assert 0 <= observed <= seen
