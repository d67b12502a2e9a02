"""A routing lab for tests, the demo and the benchmark: echo backends, a real nginx in
either mode configured by ``syncer nginx-example --routing-entry``, the mode's real sink,
and a sync that reads instances and config entries from a (dev) Consul over HTTP.

Until the agent's Watcher carries the config-entry Sources, ``sync()`` plays its part:
the same reads (ConsulClient), the same parsing (ConfigEntrySource's ``read_entries``),
the same planning (``desired_state``) and the same sink.
"""

from __future__ import annotations

import dataclasses
import http.client
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import requests

from syncer.config import ApiSettings, ConsulSettings, ReloadSettings
from syncer.discovery.client import ConsulClient
from syncer.discovery.normalize import Rules, health_entries
from syncer.model import Desired, Server
from syncer.nginx_example import ExampleOptions, render_example
from syncer.planning.desired import plan
from syncer.routing.compile import Compiled, RoutingConfig, referenced_services
from syncer.routing.entries import KINDS, Entry
from syncer.routing.kv import DEFAULT_PREFIX as KV_PREFIX
from syncer.routing.kv_source import KVSource
from syncer.routing.sources import read_entries
from syncer.sinks.api import ApiSink
from syncer.sinks.base import ApplyResult
from syncer.sinks.reload import ReloadSink
from syncer.testing.nginx import NginxProcess
from syncer.testing.ports import free_port, free_ports
from syncer.testing.wait import wait_until

Mode = Literal["reload", "api"]


class EchoBackends:
    """nginx-served backends that tell who answered and what they received: ``X-Backend``
    (name), ``X-Uri`` (the request URI as proxied) and ``X-Got-Routed`` (that header)."""

    def __init__(self, prefix: Path, names: list[str]) -> None:
        self.ports = dict(zip(names, free_ports(len(names)), strict=True))
        servers = "\n".join(
            f"""    server {{
        listen 127.0.0.1:{port} reuseport;
        keepalive_requests 1000000;
        location / {{
            add_header X-Backend {name} always;
            add_header X-Uri $request_uri always;
            add_header X-Got-Routed $http_x_routed always;
            add_header X-Served-By {name} always;
            return 200 "{name}\\n";
        }}
    }}"""
            for name, port in self.ports.items()
        )
        conf = f"""worker_processes 1;
error_log logs/error.log warn;
pid logs/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    default_type text/plain;
{servers}
}}
"""
        self.nginx = NginxProcess(prefix, conf)

    def start(self) -> EchoBackends:
        self.nginx.start(wait_port=next(iter(self.ports.values())))
        return self

    def stop(self) -> None:
        self.nginx.stop()


@dataclass
class Reply:
    backend: str
    status: int
    headers: Mapping[str, str]


@dataclass
class RoutingLab:
    mode: Mode
    root: Path
    consul_url: str
    entries: tuple[str, ...] = ("web",)
    services: tuple[str, ...] = ("web",)
    worker_processes: int = 1
    port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    desired: Desired | None = None
    report: Compiled | None = None
    refused: list[str] = field(default_factory=list)
    # gray rules (docs/kv-layout.md): the KV folder sync() reads, and the client address
    # the routing server sees (realip from trusted proxies; also listening on [::1])
    kv_prefix: str = KV_PREFIX
    trusted_proxies: tuple[str, ...] = ()
    ipv6: bool = False

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.token_file = self.root / "admin.token"
        self.token_file.write_text(secrets.token_hex(16) + "\n")
        self.token_file.chmod(0o600)
        self.upstream_conf = self.root / "nginx" / "conf" / "upstream.conf"
        self.upstream_conf.parent.mkdir(parents=True, exist_ok=True)
        self.upstream_conf.write_text("# nothing synced yet\n")
        options = ExampleOptions(
            listen=f"127.0.0.1:{free_port()}",
            admin_listen=f"127.0.0.1:{self.admin_port}",
            services=self.services,
            token_file=str(self.token_file),
            snapshot_file=str(self.root / "snapshot.json"),
            upstream_conf=str(self.upstream_conf),
            worker_processes=self.worker_processes,
            access_log=None,
            admin_access_log=None,
            routing_entries=self.entries,
            routing_listen=f"127.0.0.1:{self.port}",
            client_address="x-forwarded-for" if self.trusted_proxies else "connection",
            trusted_proxies=self.trusted_proxies,
        )
        text = render_example(self.mode, options)
        if self.ipv6:
            listen = f"listen 127.0.0.1:{self.port} default_server"
            text = text.replace(listen, f"{listen};\n        listen [::1]:{self.port} default_server", 1)
        self.nginx = NginxProcess(self.root / "nginx", text)
        host, _, port = self.consul_url.removeprefix("http://").rpartition(":")
        self.client = ConsulClient(ConsulSettings(address=f"{host}:{port}"))
        self.sink: ReloadSink | ApiSink
        if self.mode == "reload":
            self.sink = ReloadSink(
                ReloadSettings(
                    output=self.upstream_conf,
                    nginx=self.nginx.binary,
                    nginx_conf=self.nginx.conf_path,
                    nginx_prefix=self.nginx.prefix,
                )
            )
        else:
            self.sink = ApiSink(
                ApiSettings(endpoint=f"http://127.0.0.1:{self.admin_port}", token=self.token_file.read_text().strip())
            )
        self._good: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self._ignored: dict[str, dict[str, tuple[str, ...]]] = {kind: {} for kind in KINDS}
        self.session = requests.Session()
        self.kv_source = KVSource(self.client, self.kv_prefix)

    def start(self) -> RoutingLab:
        self.nginx.start(wait_port=self.port)
        return self

    def stop(self) -> None:
        self.session.close()
        self.sink.close()
        self.client.close()
        self.nginx.stop()

    # --- what the agent does ------------------------------------------------------------
    def read_config(self) -> RoutingConfig:
        entries: list[Entry] = []
        self.refused = []
        for kind in KINDS:
            answer = self.client.config_entries(kind)
            good, refused, _ignored = read_entries(kind, answer.body, self._good[kind], self._ignored[kind])
            entries.extend(good)
            self.refused.extend(refused)
        return RoutingConfig.of(entries)

    def read_services(self, names: set[str]) -> dict[str, tuple[Server, ...]]:
        rules = Rules(allow_hostnames=self.mode == "reload")
        return {name: health_entries(name, self.client.health_service(name).body, rules).servers for name in names}

    def sync(self) -> ApplyResult:
        """One pass: read Consul, plan, apply; in reload mode wait for the new workers."""
        config = self.read_config()
        kv = self.client.kv_recurse(self.kv_prefix)  # gray rules, KV stages 1-4 (docs/kv-layout.md)
        config = dataclasses.replace(config, gray=self.kv_source.read(kv, kv.index or 0)[1].rules)
        services = self.read_services(set(self.services) | referenced_services(config))
        self.desired, self.report = plan(services, config, self.desired)
        before = {p.pid for p in self.nginx.workers()}
        result = self.sink.apply(self.desired)
        if not result.ok:
            raise RuntimeError(f"sync failed: {result.action}: {result.detail}")
        if result.action == "reloaded":
            wait_until(
                lambda: not ({p.pid for p in self.nginx.workers(include_shutting_down=True)} & before),
                timeout=15,
                message="the reloaded nginx workers",
            )
        return result

    def agent_args(self, consul_address: str, quiescence: tuple[float, float] | None = None) -> list[str]:
        """``syncer run --routing`` against this lab's nginx (``python -m syncer`` + these)."""
        args = ["run", "--mode", self.mode, "--consul-addr", consul_address, "--routing",
                "--log-format", "json", "--metrics-listen", "127.0.0.1:0"]  # fmt: skip
        for service in self.services:
            args += ["--service", service]
        if quiescence is not None:
            args += ["--quiescence-min", f"{quiescence[0]:g}", "--quiescence-max", f"{quiescence[1]:g}"]
        if self.mode == "reload":
            return [*args, "--output", str(self.upstream_conf), "--nginx", self.nginx.binary,
                    "--nginx-prefix", str(self.nginx.prefix), "--nginx-conf", str(self.nginx.conf_path)]  # fmt: skip
        endpoint = f"http://127.0.0.1:{self.admin_port}"
        return [*args, "--api-endpoint", endpoint, "--api-token-file", str(self.token_file)]

    # --- traffic ------------------------------------------------------------------------
    def request(
        self,
        path: str = "/",
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        host: str | None = None,
        source: str | None = None,
    ) -> Reply:
        sent = {"Host": host or self.entries[0], **(headers or {})}
        if source is not None:  # another loopback client address (gray lists): its own connection
            return _from(source, self.port, method, path, sent)
        response = self.session.request(method, f"http://127.0.0.1:{self.port}{path}", headers=sent, timeout=5)
        backend = response.headers.get("X-Backend", str(response.status_code))
        return Reply(backend, response.status_code, response.headers)


def _from(source: str, port: int, method: str, path: str, headers: Mapping[str, str]) -> Reply:
    """One request from ``source`` (127.0.0.x, or ::1 to [::1]), like a distinct client."""
    target = "::1" if ":" in source else "127.0.0.1"
    conn = http.client.HTTPConnection(target, port, timeout=5, source_address=(source, 0))
    try:
        conn.request(method, path, headers={**headers, "Connection": "close"})
        response = conn.getresponse()
        response.read()
        fields = dict(response.getheaders())
        return Reply(fields.get("X-Backend", str(response.status)), response.status, fields)
    finally:
        conn.close()
