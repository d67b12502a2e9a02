"""/healthz: 503 until the first full sync, 200 after it, and 503 again once Consul has
been unreachable, or changes could not be applied, for longer than the configured grace
(`[observe] consul_grace` / `nginx_grace` in the TOML config). The status names the cause."""

from __future__ import annotations

import stat
from collections.abc import Iterator

import pytest

from syncer.devconsul.server import DevConsul
from syncer.testing.backends import BackendFarm
from syncer.testing.consul import ConsulWriter
from syncer.testing.ports import free_port
from syncer.testing.wait import wait_until
from tests.conftest import StartAgent
from tests.faultproxy import FaultProxy
from tests.stack import (
    BOTH_MODES,
    NEEDS_LUA,
    NEEDS_NGINX,
    Stack,
    healthz,
    metric,
    metrics_url,
    register,
    scrape,
    write_config,
)

GRACE = 0.5


def status_becomes(url: str, code: int, status: str, timeout: float = 15.0) -> dict[str, object]:
    def probe() -> dict[str, object] | None:
        got, body = healthz(url)
        return body if (got, body["status"]) == (code, status) else None

    return wait_until(probe, timeout=timeout, message=f"/healthz {code} {status!r}")


@pytest.mark.parametrize("stack", BOTH_MODES, indirect=True)
def test_503_before_the_first_sync_then_200(stack: Stack, backends: BackendFarm, start_agent: StartAgent) -> None:
    """Consul not there yet: "starting" (503) with the Consul error; once synced: "ok" (200)."""
    port = free_port()
    agent = start_agent(stack.agent_args(f"127.0.0.1:{port}"))
    url = metrics_url(agent)
    body = status_becomes(url, 503, "starting")
    assert body["synced"] is False
    wait_until(lambda: "unreachable" in str(healthz(url)[1].get("consul_error", "")), message="the Consul error shown")
    assert metric(scrape(url), "syncer_healthy") == 0
    with DevConsul(port=port) as dev:
        consul = ConsulWriter(dev.url)
        register(consul, backends, "b1")
        status_becomes(url, 200, "ok")
        consul.close()
    assert metric(scrape(url), "syncer_healthy") == 1


@pytest.mark.parametrize("stack", BOTH_MODES, indirect=True)
def test_503_when_consul_is_unreachable_past_the_grace(
    stack: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm, start_agent: StartAgent
) -> None:
    """Consul cuts every connection (the agent died): 503 "consul unreachable" after
    consul_grace, while nginx keeps serving; 200 again once Consul answers."""
    config = write_config(stack.root / "h.toml", {"observe": {"consul_grace": GRACE}})
    register(consul, backends, "b1")
    agent = start_agent(stack.agent_args(dev_consul.address, "--config", str(config)))
    url = metrics_url(agent)
    stack.wait_serving(backends, {"b1"})
    status_becomes(url, 200, "ok")

    dev_consul.faults.down()  # every new connection cut: the liveness probe notices
    body = status_becomes(url, 503, "consul unreachable")
    assert float(str(body["consul_failing_for"])) >= GRACE  # rounded to 0.1s
    assert stack.served({"b1"})
    dev_consul.faults.clear()
    status_becomes(url, 200, "ok")


@NEEDS_NGINX
def test_503_when_nginx_refuses_changes_past_the_grace_reload(
    stack: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm, start_agent: StartAgent
) -> None:
    """Reload mode: the reload command fails for longer than nginx_grace → 503 "nginx
    reload failing" with the error; 200 once a retried reload works."""
    flag = stack.root / "refuse"
    reload = stack.root / "reload.sh"
    reload.write_text(f'#!/bin/sh\n[ -e "{flag}" ] && exit 1\nexec {" ".join(stack.nginx.base_args)} -s reload\n')
    reload.chmod(reload.stat().st_mode | stat.S_IXUSR)
    config = write_config(stack.root / "h.toml", {"observe": {"nginx_grace": GRACE}})
    register(consul, backends, "b1")
    agent = start_agent(stack.agent_args(dev_consul.address, "--config", str(config), "--reload-command", str(reload)))
    url = metrics_url(agent)
    stack.wait_serving(backends, {"b1"})

    flag.touch()
    register(consul, backends, "b2")
    body = status_becomes(url, 503, "nginx reload failing")
    assert "reload failed" in str(body["nginx_error"])
    flag.unlink()
    status_becomes(url, 200, "ok")
    stack.wait_serving(backends, {"b1", "b2"})


@pytest.fixture
def proxy(stack: Stack) -> Iterator[FaultProxy]:
    running = FaultProxy(stack.admin_port).start()
    yield running
    running.stop()


@NEEDS_LUA
@pytest.mark.parametrize("stack", ["api"], indirect=True)
def test_503_when_nginx_refuses_changes_past_the_grace_api(
    stack: Stack,
    proxy: FaultProxy,
    dev_consul: DevConsul,
    consul: ConsulWriter,
    backends: BackendFarm,
    start_agent: StartAgent,
) -> None:
    """Api mode: the endpoint answers 503 for longer than nginx_grace → /healthz 503 "nginx
    endpoint failing"; 200 once a retried push goes through."""
    config = write_config(stack.root / "h.toml", {"observe": {"nginx_grace": GRACE}})
    register(consul, backends, "b1")
    agent = start_agent(stack.agent_args(dev_consul.address, "--config", str(config), endpoint=proxy.url))
    url = metrics_url(agent)
    stack.wait_serving(backends, {"b1"})

    proxy.set("error", status=503)
    register(consul, backends, "b2")
    body = status_becomes(url, 503, "nginx endpoint failing")
    assert "503" in str(body["nginx_error"])
    proxy.set("pass")
    status_becomes(url, 200, "ok")
    stack.wait_serving(backends, {"b1", "b2"})


@NEEDS_NGINX
def test_503_names_the_upstream_file_when_it_cannot_be_written(
    stack: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm, start_agent: StartAgent
) -> None:
    """Reload mode: the upstream file cannot be written (here its folder is gone; a full
    disk or a read-only mount fail the same way) → 503 "cannot write the upstream file"
    with the OS error, not "nginx refusing changes"; 200 once it can be written again."""
    link = stack.root / "out"
    link.symlink_to(stack.upstream_conf.parent)
    output = link / stack.upstream_conf.name
    config = write_config(stack.root / "h.toml", {"observe": {"nginx_grace": GRACE}})
    register(consul, backends, "b1")
    agent = start_agent(stack.agent_args(dev_consul.address, "--config", str(config), "--output", str(output)))
    url = metrics_url(agent)
    stack.wait_serving(backends, {"b1"})

    link.unlink()
    register(consul, backends, "b2")
    body = status_becomes(url, 503, "cannot write the upstream file")
    assert "No such file or directory" in str(body["nginx_error"])
    assert stack.served({"b1"})  # nginx keeps the last good state
    link.symlink_to(stack.upstream_conf.parent)
    status_becomes(url, 200, "ok")
    stack.wait_serving(backends, {"b1", "b2"})
