"""The pieces of one scale run: N services x 3 passing instances in the dev Consul, a real
nginx configured by ``syncer nginx-example`` for those N services, the backends, and the
agent as a real subprocess selecting the services by tag.

Every instance of every service points at one of three shared backends (an upstream is per
service, so sharing ports across services is fine); each measured change uses a fresh
backend of its own, so the first request that reaches it through nginx marks the change
as propagated.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bench.stack import stop_nginx
from syncer.devconsul.decode import parse_service
from syncer.devconsul.server import DevConsul
from syncer.nginx_example import ExampleOptions, render_example
from syncer.testing.backends import BackendFarm
from syncer.testing.nginx import NginxProcess
from syncer.testing.ports import free_ports

Mode = Literal["reload", "api"]
TAG = "scale"
BASE_BACKENDS = ("base0", "base1", "base2")
# Room to spare whatever the example's default: that default (10m) held 2,000 upstreams
# x 10 servers when checked (2,000 PUTs through the admin API, none refused), and another
# change resizes it; the bench should not measure a full dict.
DICT_SIZE = "64m"
# Host matching: a `map ... hostnames` of 2 x N entries outgrows nginx's default hash sizes.
MAP_HASH = "    map_hash_max_size 65536;\n    map_hash_bucket_size 128;\n"


def service_names(count: int) -> list[str]:
    return [f"svc{i:04d}" for i in range(count)]


def instance_body(service: str, instance: str, port: int, status: str = "passing") -> dict[str, Any]:
    """The /v1/agent/service/register body of one instance with one TTL check."""
    return {
        "Name": service,
        "ID": instance,
        "Address": "127.0.0.1",
        "Port": port,
        "Tags": [TAG],
        "Check": {"CheckID": f"service:{instance}", "TTL": "60m", "Status": status},
    }


def seed(dev: DevConsul, bodies: list[dict[str, Any]]) -> None:
    """Register many instances straight into the in-process dev Consul, through the same
    parser and agent code its HTTP endpoint uses (6,000 HTTP PUTs would take longer than
    the measurement)."""
    for body in bodies:
        dev.agent.register_service(parse_service(body))


class ScaleProxy:
    """The nginx under test for N services (one worker)."""

    def __init__(self, mode: Mode, workdir: Path, services: list[str]) -> None:
        self.mode = mode
        self.port, self.admin_port = free_ports(2)
        self.prefix = workdir / f"nginx-{mode}"
        self.upstream_conf = self.prefix / "conf" / "upstream.conf"
        self.token_file = workdir / f"admin-{mode}.token"
        self.snapshot_file = workdir / f"snapshot-{mode}.json"
        options = ExampleOptions(
            listen=f"127.0.0.1:{self.port}",
            admin_listen=f"127.0.0.1:{self.admin_port}",
            services=tuple(services),
            token_file=str(self.token_file),
            snapshot_file=str(self.snapshot_file),
            upstream_conf=str(self.upstream_conf),
            access_log=None,
            admin_access_log=None,
            worker_processes=1,
            worker_connections=4096,
            dict_size=DICT_SIZE,
        )
        conf = render_example(mode, options)
        if conf.count("http {") != 1:
            raise ValueError("unexpected nginx.conf: cannot add the map hash sizes")
        self.conf_text = conf.replace("http {\n", "http {\n" + MAP_HASH, 1)
        self.nginx = NginxProcess(self.prefix, self.conf_text)

    def start(self) -> ScaleProxy:
        self.token_file.write_text(secrets.token_hex(24) + "\n")
        self.token_file.chmod(0o600)
        if self.mode == "reload":
            self.upstream_conf.parent.mkdir(parents=True, exist_ok=True)
            self.upstream_conf.write_text("# nothing synced yet\n")
        self.nginx.start(wait_port=self.port)
        return self

    def stop(self) -> None:
        stop_nginx(self.nginx)

    def upstreams(self) -> dict[str, int]:
        """Upstream name -> live servers nginx was given (reload: the rendered file; api: the
        admin API's full listing)."""
        if self.mode == "reload":
            return _rendered_upstreams(self.upstream_conf)
        token = self.token_file.read_text().strip()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.admin_port}/upstreams", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.loads(response.read())
        return {
            name: sum(1 for s in u.get("servers", []) if not s.get("down"))
            for name, u in body.get("upstreams", {}).items()
        }


def _rendered_upstreams(path: Path) -> dict[str, int]:
    found: dict[str, int] = {}
    current: str | None = None
    text = path.read_text() if path.exists() else ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("upstream ") and stripped.endswith("{"):
            current = stripped.split()[1]
            found[current] = 0
        elif stripped == "}":
            current = None
        elif current is not None and stripped.startswith("server ") and " down" not in stripped:
            found[current] += 1
    return found


@dataclass(frozen=True)
class AgentConfig:
    max_connections: int = 16
    quiescence: tuple[float, float] = (0.0, 0.0)


class ScaleAgent:
    """``python -m syncer run --tag scale`` as a real subprocess, JSON logs in a file."""

    def __init__(self, mode: Mode, proxy: ScaleProxy, consul_address: str, workdir: Path, config: AgentConfig):
        self.log_path = workdir / f"agent-{mode}.log"
        self.config_path = workdir / f"agent-{mode}.toml"
        self.config_path.write_text(
            f"# bench: written by bench/scale_stack.py\n[consul]\nmax_connections = {config.max_connections}\n"
            "[safety]\nmax_drop_share = 1.0\n"
        )
        args = [
            sys.executable, "-m", "syncer", "run", "--config", str(self.config_path), "--mode", mode,
            "--consul-addr", consul_address, "--metrics-listen", "127.0.0.1:0", "--log-format", "json",
            "--tag", TAG,
            "--quiescence-min", f"{config.quiescence[0]:g}", "--quiescence-max", f"{config.quiescence[1]:g}",
        ]  # fmt: skip
        if mode == "reload":
            args += [
                "--output", str(proxy.upstream_conf), "--nginx", proxy.nginx.binary,
                "--nginx-prefix", str(proxy.prefix), "--nginx-conf", str(proxy.nginx.conf_path),
            ]  # fmt: skip
        else:
            args += [
                "--api-endpoint", f"http://127.0.0.1:{proxy.admin_port}",
                "--api-token-file", str(proxy.token_file), "--snapshot-file", str(proxy.snapshot_file),
            ]  # fmt: skip
        self.args = args
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def command(self) -> str:
        return " ".join(["syncer", *self.args[3:]])

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("agent not started")
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> ScaleAgent:
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        return self

    def check_alive(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"agent exited with {self._proc.returncode}: {tail}")

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    events.append(event)
        return events

    def stop(self, timeout: float = 10.0) -> int | None:
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        return self._proc.returncode


def start_backends(workdir: Path, extra: list[str]) -> BackendFarm:
    """The three shared backends plus one fresh backend per measured change."""
    farm = BackendFarm(workdir / "backends", [*BASE_BACKENDS, *extra])
    return farm.start()
