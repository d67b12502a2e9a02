"""Sharp drops: a service losing all its instances, or more than safety.max_drop_share of
them, in one answer is held until a second read, safety.drop_confirm_delay later,
confirms it. Held drops are logged and counted; an upstream is never left empty."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest
import requests

from syncer.devconsul.server import DevConsul
from syncer.testing.backends import BackendFarm
from syncer.testing.consul import ConsulWriter
from tests.conftest import StartAgent
from tests.stack import (
    BOTH_MODES,
    HEALTH_PATH,
    Stack,
    events,
    metric,
    metrics_url,
    nudge,
    register,
    wait_event,
    wait_metric,
    write_config,
)

DELAY = 0.5


def guard_config(stack: Stack) -> Path:
    return write_config(stack.root / "guard.toml", {"safety": {"drop_confirm_delay": DELAY, "max_drop_share": 0.5}})


def at(event: dict[str, object]) -> float:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize("stack", BOTH_MODES, indirect=True)
def test_an_empty_answer_is_held_and_not_confirmed(
    stack: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm, start_agent: StartAgent
) -> None:
    """One empty answer (a restarted follower, consul #3975) is held; the confirming read
    shows the instances, so nothing is ever removed; both steps are logged and counted."""
    register(consul, backends, "b1")
    register(consul, backends, "b2")
    agent = start_agent(stack.agent_args(dev_consul.address, "--config", str(guard_config(stack))))
    stack.wait_serving(backends, {"b1", "b2"})
    before = stack.fingerprint()

    dev_consul.faults.empty(HEALTH_PATH, remaining=1)
    nudge(consul)
    (held,) = wait_event(agent, "sharp drop held until a second read confirms it", service="web")[:1]
    assert (held["before"], held["after"]) == (2, 0)
    (recovered,) = wait_event(agent, "sharp drop not confirmed; applying the new read")[:1]
    assert recovered["after"] == 2
    assert at(recovered) - at(held) >= DELAY - 0.05

    assert stack.fingerprint() == before
    samples = wait_metric(metrics_url(agent), "syncer_held_drops_total", service="web", outcome="recovered")
    assert metric(samples, "syncer_held_drops_total", service="web", outcome="held") == 1
    assert metric(samples, "syncer_held_drops_total", service="web", outcome="recovered") == 1
    assert metric(samples, "syncer_instances", service="web") == 2


@pytest.mark.parametrize("stack", BOTH_MODES, indirect=True)
def test_losing_every_instance_is_applied_only_when_confirmed(
    stack: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm, start_agent: StartAgent
) -> None:
    """Deregistering every instance is held for the confirm delay, then applied as an
    upstream nginx answers 502 for: a ``down`` placeholder (reload) or an explicitly empty
    set (api), never an empty ``upstream {}`` block."""
    register(consul, backends, "b1")
    register(consul, backends, "b2")
    agent = start_agent(stack.agent_args(dev_consul.address, "--config", str(guard_config(stack))))
    stack.wait_serving(backends, {"b1", "b2"})

    removed = time.monotonic()
    consul.deregister("b1")
    consul.deregister("b2")
    stack.wait_serving(backends, {"502"}, message="the confirmed drop applied")
    assert time.monotonic() - removed >= DELAY
    wait_event(agent, "sharp drop confirmed; applying", service="web", after=0)
    samples = wait_metric(metrics_url(agent), "syncer_held_drops_total", service="web", outcome="confirmed")
    assert metric(samples, "syncer_held_drops_total", service="web", outcome="confirmed") == 1
    if stack.mode == "reload":
        assert "server 127.0.0.1:65535 down;" in stack.upstream_conf.read_text()
        assert stack.nginx.test_config().returncode == 0
    else:
        assert stack.admin("GET", "/upstreams/web").json()["servers"] == []

    register(consul, backends, "b3")  # growing back from nothing is never held
    stack.wait_serving(backends, {"b3"})


def node_check(dev: DevConsul, status: str) -> None:
    """Set the node-level check of node "n2" (one raft write for every service on it)."""
    body = {"Node": "n2", "Address": "127.0.0.1", "Check": {"CheckID": "alive", "Name": "alive", "Status": status}}
    requests.put(f"{dev.url}/v1/catalog/register", json=body, timeout=5).raise_for_status()


def register_on_n2(dev: DevConsul, farm: BackendFarm, name: str) -> None:
    service = {"ID": name, "Service": "web", "Address": "127.0.0.1", "Port": farm.ports[name]}
    body = {"Node": "n2", "Address": "127.0.0.1", "Service": service}
    requests.put(f"{dev.url}/v1/catalog/register", json=body, timeout=5).raise_for_status()


@pytest.mark.parametrize("stack", BOTH_MODES, indirect=True)
def test_losing_more_than_the_share_in_one_answer_is_held(
    stack: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm, start_agent: StartAgent
) -> None:
    """Node n2 (b2, b3, b4) fails: 4 → 1 in one answer (three quarters lost, share 0.5) waits
    for the confirming read, which confirms it. Losing a quarter (4 → 3) is applied at once."""
    register(consul, backends, "b1")
    node_check(dev_consul, "passing")
    for name in ("b2", "b3", "b4"):
        register_on_n2(dev_consul, backends, name)
    agent = start_agent(stack.agent_args(dev_consul.address, "--config", str(guard_config(stack))))
    stack.wait_serving(backends, {"b1", "b2", "b3", "b4"})
    before = stack.fingerprint()

    node_check(dev_consul, "critical")
    (held,) = wait_event(agent, "sharp drop held until a second read confirms it")[:1]
    assert (held["before"], held["after"]) == (4, 1)
    assert stack.fingerprint() == before  # nothing applied before the confirming read
    stack.wait_serving(backends, {"b1"}, message="the confirmed drop applied")
    wait_event(agent, "sharp drop confirmed; applying", before=4, after=1)

    node_check(dev_consul, "passing")
    stack.wait_serving(backends, {"b1", "b2", "b3", "b4"})
    consul.deregister("b1")
    stack.wait_serving(backends, {"b2", "b3", "b4"})
    assert len(events(agent, "sharp drop held until a second read confirms it")) == 1
