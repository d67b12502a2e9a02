"""Reload mode end to end: dev Consul over HTTP → agent subprocess → upstream.conf →
nginx -t → reload of a real nginx, with real requests through it to real backends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from syncer.devconsul.server import DevConsul
from syncer.testing.backends import BackendFarm
from syncer.testing.consul import ConsulWriter
from syncer.testing.wait import wait_until
from tests.conftest import StartAgent, needs_nginx
from tests.stack import Stack, make_stack, register

pytestmark = [needs_nginx]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Stack]:
    stack = make_stack("reload", tmp_path / "reload", worker_processes=2).start()
    yield stack
    stack.stop()


def test_traffic_follows_register_check_failure_and_deregister(
    env: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm, start_agent: StartAgent
) -> None:
    """Registering, failing a check and deregistering move real traffic through nginx."""
    register(consul, backends, "b1")
    check_b2 = register(consul, backends, "b2")
    agent = start_agent(env.agent_args(dev_consul.address))
    wait_until(lambda: env.served({"b1", "b2"}), timeout=15, message="b1 and b2 serve")

    register(consul, backends, "b3")
    wait_until(lambda: env.served({"b1", "b2", "b3"}), timeout=10, message="b3 joins")

    consul.check(check_b2, "critical")
    wait_until(lambda: env.served({"b1", "b3"}), timeout=10, message="b2 leaves on a failed check")

    consul.check(check_b2, "passing")
    wait_until(lambda: env.served({"b1", "b2", "b3"}), timeout=10, message="b2 comes back")

    for name in ("b1", "b2", "b3"):
        consul.deregister(name)
    # No instance left: the placeholder keeps nginx valid and it answers 502.
    wait_until(lambda: env.served({"502"}, count=5), timeout=10, message="502 when nothing is healthy")
    assert "127.0.0.1:65535 down" in env.upstream_conf.read_text()
    assert agent.alive()
    events = [json.loads(line) for line in agent.log().splitlines() if line.startswith("{")]
    syncs = [e for e in events if e.get("event") == "upstream changed"]
    assert any(e["added"] and e["action"] == "reloaded" and "duration" in e for e in syncs)
    assert any(e["removed"] for e in syncs)


def test_unchanged_data_causes_no_reload(
    env: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm, start_agent: StartAgent
) -> None:
    """Consul answers that do not change the healthy set leave nginx's workers alone."""
    check = register(consul, backends, "b1")
    register(consul, backends, "b2")
    start_agent(env.agent_args(dev_consul.address))
    wait_until(lambda: env.served({"b1", "b2"}), timeout=15, message="initial sync")
    wait_until(lambda: len(env.nginx.workers(include_shutting_down=True)) == 2, timeout=10, message="old workers gone")
    workers = {p.pid for p in env.nginx.workers()}
    mtime = env.upstream_conf.stat().st_mtime_ns

    def health_queries() -> int:
        stats = requests.get(f"{dev_consul.url}/_dev/stats", timeout=5).json()
        return sum(n for path, n in stats["requests"].items() if path.startswith("GET /v1/health/service/web"))

    before = health_queries()
    # Writes that move Consul's index for "web" but not what nginx needs: an instance that
    # is not passing, a meta change the template does not render, and another service.
    register(consul, backends, "b3", status="critical")
    register(consul, backends, "b1", meta={"version": "2"})
    consul.check(check, "passing")
    consul.register("other", "other-1", 9999)
    # At least one targeted read of web (the check detector saw b3 and b1's check); one read
    # made after both writes explains the catalog's move too, so a second is not required.
    wait_until(lambda: health_queries() >= before + 1, timeout=10, message="the watcher re-read web")
    assert env.served({"b1", "b2"})
    assert {p.pid for p in env.nginx.workers()} == workers
    assert env.upstream_conf.stat().st_mtime_ns == mtime


def test_a_broken_template_keeps_the_previous_config_live(
    env: Stack,
    dev_consul: DevConsul,
    consul: ConsulWriter,
    backends: BackendFarm,
    start_agent: StartAgent,
    tmp_path: Path,
) -> None:
    """A template nginx refuses never goes live: file restored, no reload, agent keeps running."""
    register(consul, backends, "b1")
    template = tmp_path / "upstream.conf.j2"
    template.write_text(
        "{% for u in upstreams %}upstream {{ u.name }} {\n{% for s in u.servers %}"
        "    server {{ s.endpoint }};\n{% endfor %}}\n{% endfor %}"
    )
    config = tmp_path / "syncer.toml"
    config.write_text(f'[reload]\ntemplate = "{template}"\n')
    agent = start_agent(["--config", str(config), *env.agent_args(dev_consul.address)])
    wait_until(lambda: env.served({"b1"}), timeout=15, message="initial sync")
    good = env.upstream_conf.read_bytes()
    workers = {p.pid for p in env.nginx.workers()}

    # The operator breaks the template (an unknown directive) and reloads the agent.
    template.write_text(template.read_text().replace("    server", "    serve"))
    agent.signal(signal.SIGHUP)
    wait_until(lambda: "configuration reloaded" in agent.log(), timeout=10, message="agent re-read its config")
    register(consul, backends, "b2")
    wait_until(lambda: "nginx -t refused" in agent.log(), timeout=10, message="nginx -t refused the render")
    assert env.upstream_conf.read_bytes() == good
    assert {p.pid for p in env.nginx.workers()} == workers
    assert env.served({"b1"})
    assert agent.alive()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncer", *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}, check=False,
    )  # fmt: skip


def test_once_dry_run_prints_the_block_and_changes_nothing(
    env: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm
) -> None:
    """The issue's acceptance check: exactly the two passing instances, nothing touched."""
    register(consul, backends, "b1")
    register(consul, backends, "b2")
    register(consul, backends, "b3", status="critical")
    before = (env.upstream_conf.read_bytes(), env.upstream_conf.stat().st_mtime_ns)
    workers = {p.pid for p in env.nginx.workers()}
    done = run_cli(
        "once", "--mode", "reload", "--dry-run", "--service", "web", "--output", str(env.upstream_conf),
        env={"CONSUL_HTTP_ADDR": dev_consul.address},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    block = done.stdout[done.stdout.index("upstream web {") :].split("}")[0]
    servers = [line.strip() for line in block.splitlines() if line.strip().startswith("server ")]
    assert sorted(servers) == sorted(f"server 127.0.0.1:{backends.ports[n]};" for n in ("b1", "b2"))
    assert "would change" in done.stdout
    assert (env.upstream_conf.read_bytes(), env.upstream_conf.stat().st_mtime_ns) == before
    assert {p.pid for p in env.nginx.workers()} == workers


def test_once_applies_then_exits(
    env: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm
) -> None:
    register(consul, backends, "b4")
    args = env.agent_args(dev_consul.address)
    done = run_cli("once", *args)
    assert done.returncode == 0, done.stderr
    # `nginx -s reload` only signals the master; the new workers take a moment.
    wait_until(lambda: env.served({"b4"}), timeout=10, message="b4 serves after once")
    again = run_cli("once", *args)
    assert again.returncode == 0
    assert '"action": "unchanged"' in again.stderr


def test_once_fails_with_one_line(env: Stack, tmp_path: Path) -> None:
    """Unreachable Consul → exit 1; invalid config → exit 2; neither touches the file."""
    before = env.upstream_conf.read_bytes()
    config = tmp_path / "c.toml"
    config.write_text("[consul]\nonce_timeout = 1\n")
    unreachable = run_cli("once", "--config", str(config), *env.agent_args("127.0.0.1:1"))
    assert unreachable.returncode == 1
    last = unreachable.stderr.strip().splitlines()[-1]
    assert last.startswith("syncer once:")
    assert "unreachable" in last
    invalid = run_cli("once", *env.agent_args("127.0.0.1:1"), "--quiescence-min", "-1")
    assert invalid.returncode == 2
    assert invalid.stderr.strip() == "syncer: invalid setting quiescence.min = -1.0: must not be negative"
    assert env.upstream_conf.read_bytes() == before


def test_services_selected_by_tag_appear_and_vanish(
    env: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm, start_agent: StartAgent
) -> None:
    """--tag watches /v1/catalog/services: a tagged service that appears gets an upstream;
    one that vanishes keeps its block, emptied to the 502 placeholder, so nginx stays valid."""
    register(consul, backends, "b1", tags=["edge"])
    consul.register("api", "api-1", backends.ports["b2"], tags=["edge"])
    consul.register("internal", "internal-1", backends.ports["b3"], tags=["private"])
    args = env.agent_args(dev_consul.address, "--tag", "edge")
    args.remove("--service")
    args.remove("web")
    start_agent(args)
    wait_until(lambda: "upstream api {" in env.upstream_conf.read_text(), timeout=15, message="tagged services")
    text = env.upstream_conf.read_text()
    assert "upstream web {" in text
    assert "internal" not in text
    wait_until(lambda: env.served({"b1"}), timeout=10, message="web serves")

    consul.register("batch", "batch-1", backends.ports["b4"], tags=["edge"])
    wait_until(lambda: "upstream batch {" in env.upstream_conf.read_text(), timeout=10, message="a new service")

    consul.deregister("api-1")
    wait_until(
        lambda: "upstream api {\n    # No healthy" in env.upstream_conf.read_text(),
        timeout=10,
        message="the vanished service's upstream emptied to the placeholder",
    )
    assert env.nginx.test_config().returncode == 0
    assert env.served({"b1"})
