"""End to end through a real agent subprocess (`syncer run --routing`): the config-entry
Sources on the Watcher, planning with the entries, the sink of each mode, real nginx."""

from __future__ import annotations

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
from tests.stack import BOTH_MODES, NEEDS_NGINX, Mode


@pytest.fixture
def echo(tmp_path: Path) -> Iterator[EchoBackends]:
    farm = EchoBackends(tmp_path / "echo", ["v1a", "v2a"]).start()
    yield farm
    farm.stop()


@pytest.mark.parametrize("mode", BOTH_MODES)
def test_agent_follows_router_and_splitter(
    mode: Mode, tmp_path: Path, echo: EchoBackends, start_agent: StartAgent
) -> None:
    with DevConsul(port=0) as dev:
        writer = ConsulWriter(dev.url)
        writer.register("web", "v1a", echo.ports["v1a"], meta={"version": "1"})
        writer.register("web", "v2a", echo.ports["v2a"], meta={"version": "2"})
        for entry in (HTTP, RESOLVER, {"Kind": "service-router", "Name": "web", "Routes": [
                {"Match": {"HTTP": {"PathPrefix": "/new/"}}, "Destination": {"ServiceSubset": "v2"}}]}):  # fmt: skip
            assert requests.put(f"{dev.url}/v1/config", json=entry, timeout=5).text == "true"
        lab = RoutingLab(mode, tmp_path / "lab", dev.url).start()
        agent = start_agent(lab.agent_args(dev.address, quiescence=(0.05, 0.5)))
        try:
            wait_until(lambda: lab.request("/new/x").backend == "v2a", timeout=20, message=f"routed\n{agent.log()}")
            assert lab.request("/old").backend == "v1a"
            workers = {p.pid for p in lab.nginx.workers()}
            legs = [{"Weight": 0.01, "ServiceSubset": "v1"}, {"Weight": 99.99, "ServiceSubset": "v2"}]
            split = {"Kind": "service-splitter", "Name": "web", "Splits": legs}
            assert requests.put(f"{dev.url}/v1/config", json=split, timeout=5).text == "true"
            wait_until(lambda: lab.request("/old").backend == "v2a", timeout=20, message="the split applied")
            if mode == "api":
                assert {p.pid for p in lab.nginx.workers()} == workers  # no reload in api mode
        finally:
            agent.stop()
            lab.stop()
            writer.close()


@NEEDS_NGINX
def test_once_writes_the_routing_files(tmp_path: Path, echo: EchoBackends) -> None:
    with DevConsul(port=0) as dev:
        writer = ConsulWriter(dev.url)
        writer.register("web", "v1a", echo.ports["v1a"], meta={"version": "1"})
        writer.register("web", "v2a", echo.ports["v2a"], meta={"version": "2"})
        for entry in (HTTP, RESOLVER, {"Kind": "service-router", "Name": "web", "Routes": [
                {"Match": {"HTTP": {"PathPrefix": "/new/"}}, "Destination": {"ServiceSubset": "v2"}}]}):  # fmt: skip
            assert requests.put(f"{dev.url}/v1/config", json=entry, timeout=5).text == "true"
        lab = RoutingLab("reload", tmp_path / "lab", dev.url).start()
        try:
            args = lab.agent_args(dev.address)
            args[0] = "once"
            command = [sys.executable, "-m", "syncer", *args]
            done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
            assert done.returncode == 0, done.stdout + done.stderr
            wait_until(lambda: lab.request("/new/x").backend == "v2a", timeout=10, message="the reloaded workers")
            assert lab.request("/x").backend == "v1a"
        finally:
            lab.stop()
            writer.close()
