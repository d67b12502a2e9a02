"""A real nginx wired for reload mode, plus the paths and flags the agent needs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from syncer.testing.nginx import NginxProcess
from syncer.testing.ports import free_port

INITIAL_UPSTREAMS = """upstream web {
    server 127.0.0.1:65535 down;
}
"""


@dataclass
class ReloadEnv:
    nginx: NginxProcess
    port: int
    upstream_conf: Path

    def agent_args(self, consul_addr: str, *extra: str) -> list[str]:
        return [
            "--mode", "reload",
            "--consul-addr", consul_addr,
            "--service", "web",
            "--output", str(self.upstream_conf),
            "--nginx", self.nginx.binary,
            "--nginx-prefix", str(self.nginx.prefix),
            "--nginx-conf", str(self.nginx.conf_path),
            "--quiescence-min", "0.05",
            "--quiescence-max", "0.5",
            "--log-format", "json",
            *extra,
        ]  # fmt: skip


def make_reload_env(prefix: Path) -> ReloadEnv:
    port = free_port()
    upstream_conf = prefix / "conf" / "upstream.conf"
    upstream_conf.parent.mkdir(parents=True, exist_ok=True)
    upstream_conf.write_text(INITIAL_UPSTREAMS)
    conf = f"""worker_processes 2;
error_log logs/error.log warn;
pid logs/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    include {upstream_conf};
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://web;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout;
        }}
    }}
}}
"""
    return ReloadEnv(NginxProcess(prefix, conf), port, upstream_conf)
