"""Fixtures shared by the integration tests: a dev Consul over HTTP, real backends,
a real nginx, and the syncer agent as a subprocess."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from syncer.devconsul.server import DevConsul
from syncer.testing.backends import BackendFarm
from syncer.testing.consul import ConsulWriter
from syncer.testing.nginx import has_lua_module, nginx_binary

needs_nginx = pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (make bootstrap)")
needs_lua = pytest.mark.skipif(not has_lua_module(), reason="nginx's Lua module is not installed (make bootstrap)")


@pytest.fixture
def dev_consul() -> Iterator[DevConsul]:
    server = DevConsul(port=0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def consul(dev_consul: DevConsul) -> Iterator[ConsulWriter]:
    writer = ConsulWriter(dev_consul.url)
    yield writer
    writer.close()


@pytest.fixture(scope="session")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendFarm]:
    if nginx_binary() is None:
        pytest.skip("nginx is not installed")
    farm = BackendFarm(tmp_path_factory.mktemp("backends"), ["b1", "b2", "b3", "b4"])
    farm.start()
    yield farm
    farm.stop()


def hits(port: int, count: int = 40, host: str = "web") -> collections.Counter[str]:
    """Send ``count`` requests through nginx; count answers by backend name (or status)."""
    seen: collections.Counter[str] = collections.Counter()
    with requests.Session() as session:
        for _ in range(count):
            response = session.get(f"http://127.0.0.1:{port}/", headers={"Host": host}, timeout=5)
            seen[response.headers.get("X-Backend", str(response.status_code))] += 1
    return seen


class Agent:
    """``python -m syncer ...`` as a real subprocess, output kept in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "syncer", *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )

    def log(self) -> str:
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


StartAgent = Callable[..., Agent]


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[StartAgent]:
    agents: list[Agent] = []

    def start(args: list[str], env: dict[str, str] | None = None) -> Agent:
        agent = Agent(args, env or {}, tmp_path / f"agent-{len(agents)}.log")
        agents.append(agent)
        return agent

    yield start
    for agent in agents:
        agent.stop()
