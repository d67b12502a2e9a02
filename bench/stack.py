"""Start and stop the pieces of one run: the proxy under test (nginx configured by
``syncer nginx-example``), the dev Consul, and the syncer agent as a real subprocess.

Every piece listens on a free loopback port and lives under the run's own work folder;
every ``stop()`` is bounded in time and ends with SIGKILL if a process does not go.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from prometheus_client.parser import text_string_to_metric_families

from bench import procfs
from bench.ports import free_ports
from syncer.devconsul.server import DevConsul
from syncer.model import Server
from syncer.nginx_example import ExampleOptions, render_example
from syncer.testing.nginx import NginxProcess
from syncer.testing.wait import WaitTimeout, wait_until

Mode = Literal["reload", "api"]
SERVICES = ("web", "slow")

# The sharp-drop guard holds a drop of more than max_drop_share of a service's instances
# in one Consul answer for drop_confirm_delay (3 s) until a second read confirms it. The
# churn script never drops more than one or two instances per answer, but an agent
# starved of CPU on a 2-core machine could see several deregistrations in one answer;
# the guard is not what this benchmark measures, so it is opened (and the report counts
# any "sharp drop held" log line anyway).
AGENT_CONFIG = """# bench: written by bench/stack.py
[safety]
max_drop_share = 1.0
"""


def stop_nginx(nginx: NginxProcess, grace: float = 5.0) -> None:
    """SIGQUIT (graceful), then SIGKILL to the master and every child after ``grace``."""
    if not nginx.alive():
        return
    pids = [nginx.pid, *procfs.children(nginx.pid)]
    os.kill(nginx.pid, signal.SIGQUIT)
    try:
        wait_until(lambda: not nginx.alive(), timeout=grace, interval=0.05, message="nginx to stop")
    except WaitTimeout:
        nginx.kill()
    for pid in pids:  # workers a killed master left behind
        if procfs.alive(pid) and (procfs.title(pid) or "").startswith("nginx:"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def with_status_server(conf: str, port: int) -> str:
    """The same config plus one loopback server answering stub_status (sampled for throughput)."""
    body = conf.rstrip()
    if not body.endswith("}"):
        raise ValueError("expected nginx.conf to end with the http block's closing brace")
    extra = f"""
    # added by bench/stack.py: request counters for the throughput time series
    server {{
        listen 127.0.0.1:{port};
        access_log off;
        location = /stub_status {{ stub_status; }}
    }}
"""
    return body[:-1] + extra + "}\n"


ADMIN_LOG_FORMAT = "syncer_bench_admin"


def with_admin_log_format(conf: str, path: str) -> str:
    """api mode: log each admin API request with ``$msec`` and ``$request_time``, so the
    report can tell when a change reached nginx (the PUT) from when traffic showed it."""
    line = f"access_log {path};"
    if conf.count(line) != 1 or conf.count("http {") != 1:
        raise ValueError("unexpected api-mode nginx.conf: cannot add the admin log format")
    conf = conf.replace(line, f"access_log {path} {ADMIN_LOG_FORMAT};")
    fmt = f"    log_format {ADMIN_LOG_FORMAT} '$msec $request_time $request_method $uri $status';"
    return conf.replace("http {", "http {\n" + fmt, 1)


@dataclass(frozen=True)
class Applied:
    """A change reaching nginx: a PUT answered (api) or a reload signalled (reload); wall-clock."""

    start: float
    end: float


def upstream_block(name: str, servers: list[tuple[str, int]], keepalive: int) -> str:
    lines = [f"    server {host}:{port};" for host, port in servers] or ["    server 127.0.0.1:65535 down;"]
    return f"upstream {name} {{\n" + "\n".join(lines) + f"\n    keepalive {keepalive};\n}}\n"


class Proxy:
    """The nginx under test, for one mode, configured by ``render_example``."""

    def __init__(
        self,
        mode: Mode,
        workdir: Path,
        worker_processes: int,
        label: str | None = None,
        static_upstreams: str | None = None,
    ) -> None:
        self.mode = mode
        self.label = label or mode
        self.port, self.admin_port, self.status_port = free_ports(3)
        self.prefix = workdir / f"nginx-{self.label}"
        self.upstream_conf = self.prefix / "conf" / "upstream.conf"
        self.token_file = workdir / f"admin-{self.label}.token"
        self.snapshot_file = workdir / f"snapshot-{self.label}.json"
        self.options = ExampleOptions(
            listen=f"127.0.0.1:{self.port}",
            admin_listen=f"127.0.0.1:{self.admin_port}",
            services=SERVICES,
            token_file=str(self.token_file),
            snapshot_file=str(self.snapshot_file),
            upstream_conf=str(self.upstream_conf),
            # access logs off in both modes: at tens of thousands of requests a second they
            # would measure the disk, and fill it
            access_log=None,
            admin_access_log="logs/admin-access.log" if mode == "api" else None,
            worker_processes=worker_processes,
            worker_connections=4096,
        )
        conf = render_example(mode, self.options)
        if mode == "api":
            conf = with_admin_log_format(conf, "logs/admin-access.log")
        self.conf_text = with_status_server(conf, self.status_port)
        self._static = static_upstreams
        self.nginx = NginxProcess(self.prefix, self.conf_text)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> Proxy:
        self.token_file.write_text(secrets.token_hex(24) + "\n")
        self.token_file.chmod(0o600)
        if self.mode == "reload":
            # nginx needs the included file to start; the agent rewrites it on its first sync
            self.upstream_conf.write_text(self._static or "".join(upstream_block(name, [], 32) for name in SERVICES))
        self.nginx.start(wait_port=self.port)
        return self

    def stop(self, grace: float = 5.0) -> None:
        stop_nginx(self.nginx, grace)

    def admin_puts(self, upstream: str = "web") -> list[Applied]:
        """Successful ``PUT /upstreams/<upstream>`` of the admin API, from its access log."""
        path = self.prefix / "logs" / "admin-access.log"
        found = []
        if path.exists():
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) == 5 and parts[2] == "PUT" and parts[3] == f"/upstreams/{upstream}" and parts[4] == "200":
                    end = float(parts[0])
                    found.append(Applied(end - float(parts[1]), end))
        return found

    def push(self, name: str, servers: list[tuple[str, int]]) -> None:
        """api mode without an agent (the hot-path test): PUT the set straight to the admin API."""
        from syncer.effects.admin_http import AdminClient  # noqa: PLC0415
        from syncer.sinks.api import to_payload  # noqa: PLC0415

        client = AdminClient(f"http://127.0.0.1:{self.admin_port}", self.token_file.read_text().strip())
        try:
            client.put(name, {"servers": [to_payload(Server(host, port)) for host, port in servers]}, None)
        finally:
            client.close()


class Consul:
    """The dev Consul (in this process), fresh for each mode so both start alike."""

    def __init__(self) -> None:
        self.server = DevConsul(port=0)

    def start(self) -> Consul:
        self.server.start()
        return self

    @property
    def address(self) -> str:
        return self.server.address

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.server.stop()


class Agent:
    """``python -m syncer run`` as a real subprocess, JSON logs kept in a file."""

    def __init__(self, mode: Mode, proxy: Proxy, consul_address: str, workdir: Path, quiescence: tuple[float, float]):
        self.mode = mode
        self.log_path = workdir / f"agent-{mode}.log"
        self.config_path = workdir / f"agent-{mode}.toml"
        self.quiescence = quiescence
        args = [
            sys.executable, "-m", "syncer", "run", "--config", str(self.config_path), "--mode", mode,
            "--consul-addr", consul_address, "--metrics-listen", "127.0.0.1:0", "--log-format", "json",
            "--quiescence-min", f"{quiescence[0]:g}", "--quiescence-max", f"{quiescence[1]:g}",
        ]  # fmt: skip
        for service in SERVICES:
            args += ["--service", service]
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
        self._metrics_port: int | None = None

    @property
    def command(self) -> str:
        return " ".join(["syncer", *self.args[3:]])

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("agent not started")
        return self._proc.pid

    def start(self) -> Agent:
        self.config_path.write_text(AGENT_CONFIG)
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        self._metrics_port = wait_until(self._find_metrics_port, timeout=20, message="the agent's /metrics port")
        return self

    def log_events(self) -> list[dict[str, object]]:
        events = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
        return events

    def _find_metrics_port(self) -> int | None:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(f"agent exited with {self._proc.returncode}: {self.log_path.read_text()[-2000:]}")
        for event in self.log_events():
            port = event.get("port")
            if event.get("event") == "status endpoint listening" and isinstance(port, int):
                return port
        return None

    def metrics(self) -> dict[str, float]:
        """Every sample of /metrics as ``name{label=value,...}`` -> value."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self._metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        flat: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                flat[f"{sample.name}{{{labels}}}"] = sample.value
        return flat

    def cpu(self) -> procfs.CpuTimes:
        return procfs.cpu_times(self.pid) or procfs.CpuTimes(0.0, 0.0)

    def peak_rss_kib(self) -> int:
        return (procfs.status_kib(self.pid, "VmHWM") or {}).get("VmHWM", 0)

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
