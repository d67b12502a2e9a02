"""A real nginx wired for api mode by `syncer nginx-example`, and the agent's flags."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from syncer.nginx_example import ExampleOptions, render_example
from syncer.testing.nginx import NginxProcess
from syncer.testing.ports import free_port


@dataclass
class ApiEnv:
    nginx: NginxProcess
    port: int
    admin_port: int
    token_file: Path
    snapshot: Path

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def admin(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        token = self.token_file.read_text().strip()
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        return requests.request(method, self.admin_url + path, headers=headers, timeout=5, **kwargs)

    def generation(self) -> str:
        return str(self.admin("GET", "/upstreams").json()["generation"])

    def agent_args(self, consul_addr: str, *extra: str) -> list[str]:
        return [
            "--mode", "api",
            "--consul-addr", consul_addr,
            "--service", "web",
            "--api-endpoint", self.admin_url,
            "--api-token-file", str(self.token_file),
            "--snapshot-file", str(self.snapshot),
            "--metrics-listen", "127.0.0.1:0",
            "--log-format", "json",
            *extra,
        ]  # fmt: skip


def make_api_env(root: Path, worker_processes: int = 2) -> ApiEnv:
    port, admin_port = free_port(), free_port()
    root.mkdir(parents=True, exist_ok=True)
    token_file = root / "admin.token"
    token_file.write_text(secrets.token_hex(16) + "\n")
    snapshot = root / "snapshot.json"
    conf = render_example(
        "api",
        ExampleOptions(
            listen=f"127.0.0.1:{port}",
            admin_listen=f"127.0.0.1:{admin_port}",
            token_file=str(token_file),
            snapshot_file=str(snapshot),
            worker_processes=worker_processes,
            access_log=None,
        ),
    )
    return ApiEnv(NginxProcess(root / "nginx", conf), port, admin_port, token_file, snapshot)
