"""An nginx configured by ``syncer nginx-example`` with one routing entry, in either mode,
fed by ``Steering`` through the real sink (tests, demo, benchmark).

The routing server also listens on ``[::1]`` (same port) when the machine has IPv6
loopback, and believes X-Forwarded-For from ``trusted`` proxies only (realip).
"""

from __future__ import annotations

import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from syncer import resources
from syncer.config import ApiSettings, ReloadSettings
from syncer.nginx_example import ExampleOptions, render_example
from syncer.routing.kv import DEFAULT_PREFIX
from syncer.sinks.api import ApiSink
from syncer.sinks.base import Sink
from syncer.sinks.reload import ReloadSink
from syncer.testing.nginx import NginxProcess
from syncer.testing.ports import free_port
from syncer.testing.steering import Steering
from syncer.testing.wait import wait_until

Mode = Literal["reload", "api"]


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@dataclass
class SteeredNginx:
    mode: Mode
    prefix: Path
    consul_address: str
    services: tuple[str, ...]
    entry: str = "web"
    trusted: tuple[str, ...] = ("127.0.0.5",)
    workers: int = 2
    consul_token: str | None = None  # syncer's own (read) token when Consul has ACLs on
    kv_prefix: str = DEFAULT_PREFIX
    port: int = field(default_factory=free_port)  # the entry's routing server
    options: ExampleOptions = field(init=False)
    nginx: NginxProcess = field(init=False)
    steering: Steering = field(init=False)
    token: str = field(default_factory=lambda: secrets.token_hex(16))

    def __post_init__(self) -> None:
        conf_dir = self.prefix / "conf"
        conf_dir.mkdir(parents=True, exist_ok=True)
        (self.prefix / "admin.token").write_text(self.token + "\n")
        self.admin_port = free_port()
        self.options = ExampleOptions(
            listen=f"127.0.0.1:{free_port()}",
            admin_listen=f"127.0.0.1:{self.admin_port}",
            services=(self.entry,),
            token_file=str(self.prefix / "admin.token"),
            snapshot_file=None,
            lua_dir=str(resources.lua_dir()),
            upstream_conf=str(conf_dir / "upstreams.conf"),
            error_log_level="warn",
            access_log=None,
            admin_access_log=None,
            worker_processes=self.workers,
            routing_entries=(self.entry,),
            routing_listen=f"127.0.0.1:{self.port}",
            client_address="x-forwarded-for",
            trusted_proxies=self.trusted,
        )
        text = render_example(self.mode, self.options)
        if ipv6_loopback():
            listen = f"listen 127.0.0.1:{self.port} default_server"
            text = text.replace(listen, f"{listen};\n        listen [::1]:{self.port} default_server", 1)
        self.nginx = NginxProcess(self.prefix, text)
        if self.mode == "reload":
            # the upstream blocks the main server names must exist before the first sync
            (conf_dir / "upstreams.conf").write_text(f"upstream {self.entry} {{ server 127.0.0.1:9 down; }}\n")
        self.steering = Steering(
            self.consul_address,
            self._sink(),
            self.services,
            allow_hostnames=self.mode == "reload",
            token=self.consul_token,
            kv_prefix=self.kv_prefix,
        )

    def _sink(self) -> Sink:
        if self.mode == "reload":
            settings = ReloadSettings(
                output=self.prefix / "conf" / "upstreams.conf",
                nginx_conf=self.nginx.conf_path,
                nginx_prefix=self.prefix,
            )
            return ReloadSink(settings)
        return ApiSink(ApiSettings(endpoint=f"http://127.0.0.1:{self.admin_port}", token=self.token))

    def start(self) -> SteeredNginx:
        self.nginx.start(wait_port=self.port)
        if self.mode == "api":
            wait_until(lambda: _port_answers(self.admin_port), timeout=10, message="admin API")
        return self

    def sync(self) -> None:
        """One sync; in reload mode, returns once every worker runs the new config."""
        before = {p.pid for p in self.nginx.workers()}
        result = self.steering.sync()
        if not result.ok:
            raise AssertionError(f"sync failed: {result.action} {result.detail}")
        if result.action == "reloaded":
            wait_until(
                lambda: {p.pid for p in self.nginx.workers()}.isdisjoint(before),
                timeout=10,
                message="nginx workers running the new config",
            )

    def stop(self) -> None:
        self.steering.stop()
        self.nginx.stop()


def _port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
