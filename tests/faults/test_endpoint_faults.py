"""Api mode when the dynamic endpoint misbehaves: unreachable, slower than api.timeout, or
answering 5xx. The agent keeps retrying with backoff, nginx keeps its last good state, and
the change goes through once the endpoint answers, without any further Consul change."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from syncer.devconsul.server import DevConsul
from syncer.testing.backends import BackendFarm
from syncer.testing.consul import ConsulWriter
from tests.conftest import StartAgent
from tests.faultproxy import FaultProxy, Mode
from tests.stack import NEEDS_LUA, Stack, metric, metrics_url, register, scrape, wait_event, write_config

pytestmark = [NEEDS_LUA, pytest.mark.parametrize("stack", ["api"], indirect=True)]

EXPECTED: dict[Mode, str] = {
    "down": "unreachable: ConnectionError",
    "slow": "unreachable: ReadTimeout",
    "error": "503 simulated failure",
}


@pytest.fixture
def proxy(stack: Stack) -> Iterator[FaultProxy]:
    running = FaultProxy(stack.admin_port).start()
    yield running
    running.stop()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["down", "slow", "error"])
def test_endpoint_failures_are_retried_until_it_recovers(
    mode: Mode,
    stack: Stack,
    proxy: FaultProxy,
    dev_consul: DevConsul,
    consul: ConsulWriter,
    backends: BackendFarm,
    start_agent: StartAgent,
) -> None:
    """Failed syncs (logged with the cause, counted as failed pushes; 503 is seen through
    two of them), nginx still on {b1}; the endpoint comes back and {b1, b2} is pushed by a
    retry alone."""
    config = write_config(stack.root / "api.toml", {"api": {"timeout": 0.3}})
    register(consul, backends, "b1")
    agent = start_agent(stack.agent_args(dev_consul.address, "--config", str(config), endpoint=proxy.url))
    stack.wait_serving(backends, {"b1"})

    proxy.set(mode, delay=0.6, status=503)
    register(consul, backends, "b2")
    failures = wait_event(agent, "sync failed; last good state stays in force", count=2 if mode == "error" else 1)
    assert all(f["action"] == "failed" and EXPECTED[mode] in f["detail"] for f in failures), failures
    if mode != "slow":  # a write that timed out may still land: the agent re-reads before pushing again
        assert stack.ports() == {backends.ports["b1"]}
        assert stack.served({"b1"})
    assert metric(scrape(metrics_url(agent)), "syncer_pushes_total", outcome="failed") >= len(failures)

    proxy.set("pass")
    stack.wait_serving(backends, {"b1", "b2"}, message="pushed by a retry once the endpoint answered")
    (retried,) = wait_event(agent, "sync", reason="retry")[:1]
    # slow: the timed-out write may have landed after all; the retry then finds nothing to do
    assert retried["action"] == "pushed" or mode == "slow"


@pytest.mark.slow
def test_a_full_shared_dict_is_named_logged_and_retried(
    stack: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm, start_agent: StartAgent
) -> None:
    """The shared dict is full (a filler upstream someone else wrote): the push of "web"
    is refused with 500 "no memory"; the agent logs that upstream with a reason naming
    the dict and its size, reports the sync as failed, and retries with backoff; once
    there is room again it is pushed by a retry alone, without any Consul change."""
    stack.nginx.stop()
    conf = stack.nginx.conf_path.read_text()
    stack.nginx.conf_path.write_text(
        conf.replace("lua_shared_dict syncer_upstreams 10m;", "lua_shared_dict syncer_upstreams 128k;")
    )
    stack.nginx.start(wait_port=stack.port)
    fillers = []
    for size in (119, 8, 1):  # big entries, then the smaller slab slots left over
        servers = [{"address": "10.9.0.1", "port": p} for p in range(1, size + 1)]
        for i in range(400):
            name = f"filler{size}-{i}"
            if stack.admin("PUT", f"/upstreams/{name}", json={"servers": servers}).status_code != 200:
                break
            fillers.append(name)
    register(consul, backends, "b1")
    agent = start_agent(stack.agent_args(dev_consul.address))
    (refused,) = wait_event(agent, "upstream not pushed; nginx keeps its previous servers")[:1]
    assert refused["service"] == "web"
    assert 'lua_shared_dict "syncer_upstreams" is full (size 131072 bytes' in refused["error"]
    failed = wait_event(agent, "sync failed; last good state stays in force")
    assert "web" in failed[0]["detail"]

    for name in fillers:
        stack.admin("DELETE", f"/upstreams/{name}")
    stack.wait_serving(backends, {"b1"}, message="pushed by a retry once the dict had room")
