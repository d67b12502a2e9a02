"""The whole system under test, for either mode: a real nginx configured by `syncer
nginx-example`, the agent's flags for it, and probes of what nginx holds, what the agent
logged and what it exports on /metrics.

Shared by tests/faults, tests/property, tests/observability and tests/security. Every
wait polls observable state with a deadline (``wait_until``); nothing sleeps blindly.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from syncer.devconsul.server import DevConsul
from syncer.nginx_example import ExampleOptions, render_example
from syncer.testing.backends import BackendFarm
from syncer.testing.consul import ConsulWriter
from syncer.testing.nginx import NginxProcess, has_lua_module, nginx_binary
from syncer.testing.ports import free_port
from syncer.testing.wait import wait_until
from tests.conftest import Agent, hits

Mode = Literal["reload", "api"]
MODES: tuple[Mode, ...] = ("reload", "api")
HEALTH_PATH = "/v1/health/service/web"

NEEDS_NGINX = pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (make bootstrap)")
NEEDS_LUA = pytest.mark.skipif(
    nginx_binary() is None or not has_lua_module(), reason="nginx's Lua module is not installed (make bootstrap)"
)


def mode_param(mode: Mode) -> Any:
    """A pytest param for ``mode``; api mode also needs the Lua module."""
    return pytest.param(mode, id=mode, marks=[NEEDS_LUA] if mode == "api" else [NEEDS_NGINX])


BOTH_MODES = [mode_param(m) for m in MODES]

_SERVER_LINE = re.compile(r"^\s*server\s+(\S+):(\d+)([^;]*);", re.MULTILINE)


@dataclass
class Stack:
    """One nginx (and, in api mode, its admin endpoint) plus the files the agent uses."""

    mode: Mode
    root: Path
    nginx: NginxProcess
    port: int
    admin_port: int
    token_file: Path
    snapshot: Path
    upstream_conf: Path
    worker_processes: int = 1

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def admin_token(self) -> str:
        return self.token_file.read_text().strip()

    def start(self) -> Stack:
        self.nginx.start(wait_port=self.port)
        return self

    def stop(self) -> None:
        self.nginx.stop()

    def agent_args(self, consul_addr: str, *extra: str, service: bool = True, endpoint: str | None = None) -> list[str]:
        """Flags for `syncer run|once` against this stack (``endpoint`` overrides the admin URL)."""
        args = ["--mode", self.mode, "--consul-addr", consul_addr, "--log-format", "json"]
        args += ["--metrics-listen", "127.0.0.1:0"]  # never the default port: tests run side by side
        if service:
            args += ["--service", "web"]
        if self.mode == "reload":
            args += [
                "--output", str(self.upstream_conf),
                "--nginx", self.nginx.binary,
                "--nginx-prefix", str(self.nginx.prefix),
                "--nginx-conf", str(self.nginx.conf_path),
                "--quiescence-min", "0.05",
                "--quiescence-max", "0.5",
            ]  # fmt: skip
        else:
            args += [
                "--api-endpoint", endpoint or self.admin_url,
                "--api-token-file", str(self.token_file),
                "--snapshot-file", str(self.snapshot),
            ]  # fmt: skip
        return [*args, *extra]

    # --- what nginx holds -------------------------------------------------------------

    def admin(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.admin_token}", **kwargs.pop("headers", {})}
        return requests.request(method, self.admin_url + path, headers=headers, timeout=5, **kwargs)

    def ports(self, upstream: str = "web") -> set[int] | None:
        """The ports of the live (not ``down``) servers nginx was given; None: no such upstream."""
        if self.mode == "reload":
            text = self.upstream_conf.read_text() if self.upstream_conf.exists() else ""
            match = re.search(rf"^upstream {re.escape(upstream)} \{{(.*?)^\}}", text, re.MULTILINE | re.DOTALL)
            if match is None:
                return None
            return {int(port) for _, port, flags in _SERVER_LINE.findall(match.group(1)) if "down" not in flags}
        response = self.admin("GET", f"/upstreams/{upstream}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return {s["port"] for s in response.json()["servers"] if not s.get("down")}

    def wait_ports(self, upstream: str, ports: set[int], timeout: float = 15.0) -> None:
        wait_until(lambda: self.ports(upstream) == ports, timeout=timeout, message=f"upstream {upstream} = {ports}")

    def fingerprint(self) -> tuple[Any, ...]:
        """Everything a sync would change: compare before and after to prove nothing was touched."""
        workers = self.workers()
        if self.mode == "reload":
            conf = self.upstream_conf
            return (conf.read_bytes(), conf.stat().st_mtime_ns, workers) if conf.exists() else (None, workers)
        upstreams = self.admin("GET", "/upstreams").json().get("upstreams") or {}
        if upstreams:  # the snapshot is written off the apply path: let it catch up with the push
            wait_until(self.snapshot.exists, timeout=5, message="the snapshot written after a push")
        snapshot = self.snapshot.read_bytes() if self.snapshot.exists() else None
        return (json.dumps(self.admin("GET", "/upstreams").json(), sort_keys=True), snapshot, workers)

    def workers(self) -> frozenset[int]:
        """nginx's worker pids once a reload's old generation has gone (a new set = a reload)."""
        wait_until(
            lambda: len(self.nginx.workers(include_shutting_down=True)) == self.worker_processes,
            message="nginx's old workers gone",
        )
        return frozenset(p.pid for p in self.nginx.workers())

    def served(self, expected: set[str], count: int = 20) -> bool:
        """Real requests through nginx land exactly on ``expected`` (backend names or a status)."""
        return set(hits(self.port, count)) == expected

    def wait_serving(self, farm: BackendFarm, names: set[str], timeout: float = 15.0, message: str = "") -> None:
        """Until nginx holds exactly ``names`` and real traffic lands only there (a reload's
        new workers are serving). ``{"502"}``: an upstream with no live server."""
        ports = {farm.ports[n] for n in names if n in farm.ports}
        wait_until(
            lambda: self.ports() == ports and self.served(names),
            timeout=timeout,
            message=message or f"nginx serving {sorted(names)}",
        )


def make_stack(mode: Mode, root: Path, worker_processes: int = 1) -> Stack:
    root.mkdir(parents=True, exist_ok=True)
    port, admin_port = free_port(), free_port()
    token_file, snapshot = root / "admin.token", root / "snapshot.json"
    token_file.write_text(secrets.token_hex(16) + "\n")
    token_file.chmod(0o600)
    upstream_conf = root / "nginx" / "conf" / "upstream.conf"
    upstream_conf.parent.mkdir(parents=True, exist_ok=True)
    upstream_conf.write_text("# nothing synced yet\n")
    options = ExampleOptions(
        listen=f"127.0.0.1:{port}",
        admin_listen=f"127.0.0.1:{admin_port}",
        token_file=str(token_file),
        snapshot_file=str(snapshot),
        upstream_conf=str(upstream_conf),
        worker_processes=worker_processes,
        access_log=None,
        admin_access_log=None,
    )
    nginx = NginxProcess(root / "nginx", render_example(mode, options))
    return Stack(mode, root, nginx, port, admin_port, token_file, snapshot, upstream_conf, worker_processes)


@pytest.fixture
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    """A started nginx for the mode given by ``@pytest.mark.parametrize("stack", BOTH_MODES, indirect=True)``."""
    mode: Mode = getattr(request, "param", "reload")
    if nginx_binary() is None or (mode == "api" and not has_lua_module()):
        pytest.skip(f"{mode} mode needs nginx{' with the Lua module' if mode == 'api' else ''} (make bootstrap)")
    started = make_stack(mode, tmp_path / f"stack-{mode}").start()
    yield started
    started.stop()


# --- Consul ---------------------------------------------------------------------------

_nudges = itertools.count(1)


def register(consul: ConsulWriter, farm: BackendFarm, name: str, service: str = "web", **kwargs: Any) -> str:
    """Register backend ``name`` as a passing instance of ``service``; returns its check ID."""
    address, port = farm.address(name)
    return consul.register(service, name, port, address=address, **kwargs)


def nudge(consul: ConsulWriter, service: str = "web") -> None:
    """Move ``service``'s index without changing its healthy set (a new critical instance).

    Faults apply to requests that arrive after them; a watch already blocked in a long
    poll answers normally. The nudge ends that poll, so the next request meets the fault.
    """
    consul.register(service, f"nudge-{next(_nudges)}", 1, status="critical")


def fault_hits(dev: DevConsul) -> int:
    return sum(f.hits for f in dev.faults.active())


def wait_fault_hits(dev: DevConsul, at_least: int, timeout: float = 10.0) -> int:
    return wait_until(
        lambda: (n := fault_hits(dev)) >= at_least and n,
        timeout=timeout,
        message=f"{at_least} request(s) met the fault",
    )


def health_requests(dev: DevConsul, service: str = "web") -> int:
    """How many health queries for ``service`` the dev Consul has answered (or cut)."""
    stats = dev.stats()["requests"]
    return sum(n for key, n in stats.items() if key.startswith(f"GET /v1/health/service/{service}"))


# --- the agent's log and metrics ------------------------------------------------------


def events(agent: Agent, name: str | None = None) -> list[dict[str, Any]]:
    """The agent's JSON log lines (optionally only those whose event is ``name``)."""
    found = []
    for line in agent.log().splitlines():
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line being written right now
        if name is None or event.get("event") == name:
            found.append(event)
    return found


def wait_event(agent: Agent, name: str, count: int = 1, timeout: float = 15.0, **fields: Any) -> list[dict[str, Any]]:
    """Wait until the agent has logged ``name`` (with ``fields``) ``count`` times; return them."""

    def matching() -> list[dict[str, Any]] | None:
        if not agent.alive():
            raise AssertionError(f"the agent exited with {agent.proc.returncode}:\n{agent.log()[-3000:]}")
        found = [e for e in events(agent, name) if all(e.get(k) == v for k, v in fields.items())]
        return found if len(found) >= count else None

    return wait_until(matching, timeout=timeout, message=f"{count} x {name!r} {fields or ''} in the agent's log")


def metrics_url(agent: Agent, timeout: float = 15.0) -> str:
    """The agent's status endpoint, from its "status endpoint listening" line."""
    (line,) = wait_event(agent, "status endpoint listening", timeout=timeout)[:1]
    return f"http://127.0.0.1:{line['port']}"


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """GET /metrics and parse it with prometheus_client's own parser."""
    response = requests.get(f"{url}/metrics", timeout=5)
    response.raise_for_status()
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def metric(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over the samples whose labels include ``labels`` (0 when absent)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


def wait_metric(url: str, name: str, at_least: float = 1, timeout: float = 10.0, **labels: str) -> Samples:
    """Scrape until ``name`` (with ``labels``) reaches ``at_least``; return that scrape.

    The agent may log an event a moment before it counts it: poll, never scrape once."""

    def probe() -> Samples | None:
        samples = scrape(url)
        return samples if metric(samples, name, **labels) >= at_least else None

    return wait_until(probe, timeout=timeout, message=f"{name}{labels or ''} >= {at_least}")


def healthz(url: str) -> tuple[int, dict[str, Any]]:
    response = requests.get(f"{url}/healthz", timeout=5)
    body: dict[str, Any] = response.json()
    return response.status_code, body


# --- configuration --------------------------------------------------------------------


def toml(sections: Mapping[str, Mapping[str, object]]) -> str:
    """A small TOML writer for the agent's config tables (scalars and lists of strings)."""

    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(str(v))

    lines = []
    for section, keys in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {value(v)}" for k, v in keys.items())
    return "\n".join(lines) + "\n"


def write_config(path: Path, sections: Mapping[str, Mapping[str, object]]) -> Path:
    path.write_text(toml(sections))
    return path
