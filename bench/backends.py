"""Every backend of a run, served by one extra nginx (never reloaded, never churned).

Like ``syncer.testing.backends.BackendFarm`` (each instance answers its name in the body
and an ``X-Backend`` header), plus two things the benchmark needs:

- a request log of ``$msec $server_port`` for every churned instance: the first and the
  last request each instance ever received, whoever sent it (wrk, the prober), give
  propagation with about 1 ms resolution, far finer than a Python prober alone;
- ``slow``: a long-poll backend (``?hold=SECONDS``) for the long-lived connections that
  keep old nginx workers in "shutting down" after a reload.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.ports import free_ports
from syncer.testing.nginx import LUA_MODULES, NginxProcess


@dataclass(frozen=True)
class Seen:
    """Wall-clock seconds (nginx ``$msec``) of an instance's first and last request."""

    first: float
    last: float
    requests: int


class Backends:
    def __init__(self, prefix: Path, names: Iterable[str], log_dir: Path | None = None) -> None:
        """``log_dir``: where the request log goes; a tmpfs keeps its tens of MB of appends
        from competing (through the filesystem journal) with the agent's fsyncs."""
        names = list(names)
        *ports, self.slow_port = free_ports(len(names) + 1)
        self.ports: dict[str, int] = dict(zip(names, ports, strict=True))
        self.log_path = (log_dir or prefix / "logs") / "requests.log"
        servers = "\n".join(
            f"""    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            add_header X-Backend {name} always;
            return 200 "{name}\\n";
        }}
    }}"""
            for name, port in self.ports.items()
        )
        conf = f"""{LUA_MODULES}worker_processes 1;
worker_rlimit_nofile 16384;
error_log logs/error.log warn;
pid logs/nginx.pid;
events {{ worker_connections 8192; }}
http {{
    default_type text/plain;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    log_format bench '$msec $server_port';
    access_log {self.log_path} bench buffer=256k flush=100ms;
{servers}
    server {{
        listen 127.0.0.1:{self.slow_port} backlog=4096;
        access_log off;
        location / {{
            content_by_lua_block {{
                local hold = tonumber(ngx.var.arg_hold) or 10
                ngx.sleep(math.min(math.max(hold, 0), 120))
                ngx.header["X-Backend"] = "slow"
                ngx.say("slow")
            }}
        }}
    }}
}}
"""
        self.nginx = NginxProcess(prefix, conf)
        self._by_port = {port: name for name, port in self.ports.items()}

    def start(self) -> Backends:
        self.nginx.start(wait_port=self.slow_port)
        return self

    def stop(self) -> None:
        self.nginx.stop(timeout=5)

    def seen(self) -> dict[str, Seen]:
        """Parse the request log (flushed within 100 ms): first/last request per instance."""
        first: dict[int, float] = {}
        last: dict[int, float] = {}
        count: dict[int, int] = {}
        if self.log_path.exists():
            with self.log_path.open("rb") as log:
                for line in log:
                    stamp, _, port_text = line.partition(b" ")
                    try:
                        port, at = int(port_text), float(stamp)
                    except ValueError:
                        continue
                    if port not in first:
                        first[port], last[port], count[port] = at, at, 1
                        continue
                    first[port] = min(first[port], at)
                    last[port] = max(last[port], at)
                    count[port] += 1
        return {
            self._by_port[port]: Seen(first[port], last[port], count[port]) for port in first if port in self._by_port
        }
