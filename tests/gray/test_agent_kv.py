"""End to end through a real agent subprocess (`syncer run --routing --kv-prefix ...`): the
KV Source on the Watcher, the gray rules planned ahead of the Consul chain, each mode's
sink, real nginx, requests from distinct loopback source addresses."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from syncer.devconsul.server import DevConsul
from syncer.testing.consul import ConsulWriter
from syncer.testing.routing import EchoBackends, RoutingLab
from syncer.testing.wait import wait_until
from tests.conftest import StartAgent
from tests.routing.conformance import HTTP, RESOLVER
from tests.stack import BOTH_MODES, Mode


@pytest.fixture
def echo(tmp_path: Path) -> Iterator[EchoBackends]:
    farm = EchoBackends(tmp_path / "echo", ["v1a", "v2a"]).start()
    yield farm
    farm.stop()


@pytest.mark.parametrize("mode", BOTH_MODES)
def test_agent_follows_the_kv_gray_list(
    mode: Mode, tmp_path: Path, echo: EchoBackends, start_agent: StartAgent
) -> None:
    with DevConsul(port=0) as dev:
        writer = ConsulWriter(dev.url)
        writer.register("web", "v1a", echo.ports["v1a"], meta={"version": "1"})
        writer.register("web", "v2a", echo.ports["v2a"], meta={"version": "2"})
        for entry in (HTTP, RESOLVER):
            assert requests.put(f"{dev.url}/v1/config", json=entry, timeout=5).text == "true"
        key = f"{dev.url}/v1/kv/edge/gray/web/lists/testers"
        testers = {"target": {"service": "web", "subset": "v2"}, "addresses": ["127.0.0.2"]}
        requests.put(key, data=json.dumps(testers), timeout=5).raise_for_status()
        lab = RoutingLab(mode, tmp_path / "lab", dev.url).start()
        agent = start_agent([*lab.agent_args(dev.address, (0.05, 0.5)), "--kv-prefix", "edge/"])
        try:
            wait_until(  # settled: the first sync done, in every worker (reload mode: old ones gone)
                lambda: all(
                    (lab.request("/", source="127.0.0.2").backend, lab.request("/", source="127.0.0.3").backend)
                    == ("v2a", "v1a")
                    for _ in range(5)
                ),
                timeout=20,
                message=f"the tester on v2, the others on v1\n{agent.log()}",
            )
            workers = {p.pid for p in lab.nginx.workers()}
            # a bad value is refused with key, field and reason; the last good list stays
            bad = {**testers, "addresses": ["127.0.0.3", "300.1.1.1"]}
            requests.put(key, data=json.dumps(bad), timeout=5).raise_for_status()
            wait_until(lambda: "kv key refused" in agent.log(), timeout=20, message="the refusal logged")
            refusal = next(line for line in agent.log().splitlines() if "kv key refused" in line)
            assert "edge/gray/web/lists/testers" in refusal
            assert "addresses[1]" in refusal
            assert "300.1.1.1" in refusal
            assert lab.request("/", source="127.0.0.2").backend == "v2a"
            # a good change moves the client on its next request
            requests.put(key, data=json.dumps({**testers, "addresses": ["127.0.0.3"]}), timeout=5).raise_for_status()
            wait_until(
                lambda: all(
                    (lab.request("/", source="127.0.0.3").backend, lab.request("/", source="127.0.0.2").backend)
                    == ("v2a", "v1a")
                    for _ in range(5)
                ),
                timeout=20,
                message="127.0.0.3 moved to v2, 127.0.0.2 back on v1",
            )
            if mode == "api":
                assert {p.pid for p in lab.nginx.workers()} == workers  # no reload in api mode
        finally:
            agent.stop()
            lab.stop()
            writer.close()


def test_once_applies_the_kv_gray_list(tmp_path: Path, echo: EchoBackends) -> None:
    """`syncer once --routing` reads the KV prefix too: one pass, the list is in force."""
    with DevConsul(port=0) as dev:
        writer = ConsulWriter(dev.url)
        writer.register("web", "v1a", echo.ports["v1a"], meta={"version": "1"})
        writer.register("web", "v2a", echo.ports["v2a"], meta={"version": "2"})
        for entry in (HTTP, RESOLVER):
            assert requests.put(f"{dev.url}/v1/config", json=entry, timeout=5).text == "true"
        testers = {"target": {"service": "web", "subset": "v2"}, "addresses": ["127.0.0.2"]}
        key = f"{dev.url}/v1/kv/syncer/gray/web/lists/testers"
        requests.put(key, data=json.dumps(testers), timeout=5).raise_for_status()
        lab = RoutingLab("reload", tmp_path / "lab", dev.url).start()
        try:
            args = lab.agent_args(dev.address)
            args[0] = "once"
            done = subprocess.run(
                [sys.executable, "-m", "syncer", *args], capture_output=True, text=True, timeout=60, check=False
            )
            assert done.returncode == 0, done.stdout + done.stderr
            wait_until(lambda: lab.request("/", source="127.0.0.2").backend == "v2a", timeout=10, message="the list")
            # the reload `once` asked for takes effect as nginx's old workers leave
            wait_until(lambda: lab.request("/", source="127.0.0.3").backend == "v1a", timeout=10, message="others")
        finally:
            lab.stop()
            writer.close()
