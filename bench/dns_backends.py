"""Backends for the DNS strategy: one loopback IP per instance, one port for all.

An A record carries an address and no port, so nginx's ``proxy_pass http://$name:PORT``
reaches every instance on the same PORT: each instance must have its own IP. Loopback has
the whole 127.0.0.0/8, so instance ``i`` listens on ``127.77.<i // 250>.<i % 250 + 1>:PORT``.
Like ``bench.backends.Backends`` each answers its name (body and ``X-Backend``) and the
request log (``$msec $server_addr``) gives every instance's first and last request; one
extra server on 127.0.0.1 tells when nginx is up.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from bench.backends import Seen
from bench.ports import free_ports
from syncer.testing.nginx import NginxProcess

SUBNET = "127.77"


def address_of(index: int) -> str:
    if not 0 <= index < 250 * 250:
        raise ValueError(f"no loopback address for instance {index}")
    return f"{SUBNET}.{index // 250}.{index % 250 + 1}"


def instance_server(name: str, host: str, port: int) -> str:
    return f"""    server {{
        listen {host}:{port} backlog=4096;
        location / {{
            add_header X-Backend {name} always;
            return 200 "{name}\\n";
        }}
    }}"""


class DnsBackends:
    def __init__(self, prefix: Path, names: Iterable[str], log_dir: Path | None = None) -> None:
        names = list(names)
        self.port, self.ready_port = free_ports(2)
        self.addresses: dict[str, str] = {name: address_of(i) for i, name in enumerate(names)}
        self.log_path = (log_dir or prefix / "logs") / "dns-requests.log"
        servers = "\n".join(instance_server(name, addr, self.port) for name, addr in self.addresses.items())
        conf = f"""worker_processes 1;
worker_rlimit_nofile 16384;
error_log logs/error.log warn;
pid logs/nginx.pid;
events {{ worker_connections 8192; }}
http {{
    default_type text/plain;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    log_format bench '$msec $server_addr';
    access_log {self.log_path} bench buffer=256k flush=100ms;
{servers}
    server {{
        listen 127.0.0.1:{self.ready_port};
        access_log off;
        return 204;
    }}
}}
"""
        self.nginx = NginxProcess(prefix, conf)
        self._by_address = {addr: name for name, addr in self.addresses.items()}

    def start(self) -> DnsBackends:
        self.nginx.start(wait_port=self.ready_port)
        return self

    def stop(self) -> None:
        self.nginx.stop(timeout=5)

    def seen(self) -> dict[str, Seen]:
        return seen_in_log(self.log_path, self._by_address)


def seen_in_log(path: Path, names: dict[str, str]) -> dict[str, Seen]:
    """First/last request and count per instance from a ``$msec KEY`` log (KEY -> name)."""
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    count: dict[str, int] = {}
    if path.exists():
        with path.open("rb") as log:
            for line in log:
                stamp, _, key = line.rstrip(b"\n").partition(b" ")
                name = names.get(key.decode("ascii", "replace"))
                if name is None:
                    continue
                try:
                    at = float(stamp)
                except ValueError:
                    continue
                if name not in first:
                    first[name], last[name], count[name] = at, at, 1
                    continue
                first[name] = min(first[name], at)
                last[name] = max(last[name], at)
                count[name] += 1
    return {name: Seen(first[name], last[name], count[name]) for name in first}


def requests_after(path: Path, names: dict[str, str], since: dict[str, float]) -> dict[str, int]:
    """Requests each instance got after ``since[name]`` (wall clock): after its deregistration."""
    after: dict[str, int] = {}
    if not path.exists():
        return after
    with path.open("rb") as log:
        for line in log:
            stamp, _, key = line.rstrip(b"\n").partition(b" ")
            name = names.get(key.decode("ascii", "replace"))
            if name is None or name not in since:
                continue
            try:
                at = float(stamp)
            except ValueError:
                continue
            if at > since[name]:
                after[name] = after.get(name, 0) + 1
    return after
