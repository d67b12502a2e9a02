"""Real HTTP backends on loopback ports, served by one extra nginx.

Each backend answers every request with ``200`` and its own name in the body and
in an ``X-Backend`` header, so a test can tell which instance served a request that
went through the nginx under test. nginx rather than Python serves them so that the
benchmark measures the proxy, not the backends.
"""

from __future__ import annotations

from pathlib import Path

from syncer.testing.nginx import NginxProcess
from syncer.testing.ports import free_ports


class BackendFarm:
    def __init__(self, prefix: Path, names: list[str], worker_processes: int = 1, ipv6: bool = False) -> None:
        """``ipv6``: each backend also listens on ``[::1]`` with the same port."""
        self.ports: dict[str, int] = dict(zip(names, free_ports(len(names)), strict=True))

        def listens(port: int) -> str:
            v6 = f"\n        listen [::1]:{port};" if ipv6 else ""
            return f"listen 127.0.0.1:{port} reuseport backlog=4096;{v6}"

        servers = "\n".join(
            f"""    server {{
        {listens(port)}
        keepalive_requests 1000000;
        location / {{
            add_header X-Backend {name} always;
            return 200 "{name}\\n";
        }}
    }}"""
            for name, port in self.ports.items()
        )
        conf = f"""worker_processes {worker_processes};
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

    def address(self, name: str) -> tuple[str, int]:
        return "127.0.0.1", self.ports[name]

    def start(self) -> BackendFarm:
        first = next(iter(self.ports.values()))
        self.nginx.start(wait_port=first)
        return self

    def stop(self) -> None:
        self.nginx.stop()

    def __enter__(self) -> BackendFarm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
