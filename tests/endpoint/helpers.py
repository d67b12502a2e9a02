"""Start an api-mode nginx from the shipped example config and talk to it."""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import requests

from syncer import resources
from syncer.nginx_example import ExampleOptions, render_example
from syncer.testing.nginx import NginxProcess, has_lua_module, nginx_binary
from syncer.testing.ports import free_port
from syncer.testing.wait import wait_until

NEEDS_NGINX = [
    pytest.mark.nginx,
    pytest.mark.skipif(nginx_binary() is None or not has_lua_module(), reason="needs nginx with the Lua module"),
]

TOKEN = "test-token-0123456789abcdef"


def server(address: str, port: int, **extra: Any) -> dict[str, Any]:
    """A Server object for PUT bodies."""
    return {"address": address, "port": port, **extra}


@dataclass
class ApiNginx:
    """An api-mode nginx (the `nginx-example --mode api` config) under its own prefix."""

    prefix: Path
    workers: int = 1
    token: str | None = TOKEN
    services: tuple[str, ...] = ("web",)
    port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    options: ExampleOptions = field(init=False)
    nginx: NginxProcess = field(init=False)

    def __post_init__(self) -> None:
        self.prefix.mkdir(parents=True, exist_ok=True)
        if self.token is not None:
            self.token_file.write_text(self.token + "\n")
            self.token_file.chmod(0o600)
        self.options = ExampleOptions(
            listen=f"127.0.0.1:{self.port}",
            admin_listen=f"127.0.0.1:{self.admin_port}",
            services=self.services,
            token_file=str(self.token_file),
            snapshot_file=str(self.snapshot_file),
            lua_dir=str(resources.lua_dir()),
            error_log_level="info",
            access_log=None,
            admin_access_log=None,
            worker_processes=self.workers,
            debug_headers=True,
        )
        self.nginx = NginxProcess(self.prefix, render_example("api", self.options))

    @property
    def token_file(self) -> Path:
        return self.prefix / "admin.token"

    @property
    def snapshot_file(self) -> Path:
        return self.prefix / "snapshot.json"

    def with_options(self, **changes: Any) -> None:
        """Re-render the config with changed options (takes effect on start/reload)."""
        self.options = replace(self.options, **changes)
        self.nginx.conf_path.write_text(render_example("api", self.options))

    def start(self) -> ApiNginx:
        self.nginx.start(wait_port=self.admin_port)
        # the port answering is not proof enough that it is this nginx (free ports can
        # race with other test runs): wait for our admin API to answer like ours does
        wait_until(
            lambda: self.admin("GET", "/status").status_code in (200, 503),
            timeout=10,
            message=f"the admin API of {self.prefix}",
        )
        return self

    def stop(self) -> None:
        self.nginx.stop()

    # --- admin API -------------------------------------------------------------

    def admin(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        token: str | None = TOKEN,
    ) -> requests.Response:
        all_headers = dict(headers or {})
        if token is not None and "Authorization" not in all_headers:
            all_headers["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        return requests.request(
            method, f"http://127.0.0.1:{self.admin_port}{path}", data=data, headers=all_headers, timeout=10
        )

    def put(self, name: str, servers: list[dict[str, Any]], **extra: Any) -> requests.Response:
        return self.admin("PUT", f"/upstreams/{name}", {"servers": servers, **extra})

    def put_ok(self, name: str, servers: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        response = self.put(name, servers, **extra)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def get_json(self, path: str) -> Any:
        response = self.admin("GET", path)
        assert response.status_code == 200, response.text
        return response.json()

    # --- proxied traffic ----------------------------------------------------------

    def request(self, host: str = "web", path: str = "/", *, new_connection: bool = True) -> requests.Response:
        """One proxied request; a fresh connection lets any worker accept it."""
        headers = {"Host": host}
        if new_connection:
            headers["Connection"] = "close"
        return requests.get(f"http://127.0.0.1:{self.port}{path}", headers=headers, timeout=10)


def raw_http(port: int, payload: bytes, *, half_close: bool = False, timeout: float = 10) -> bytes:
    """Send bytes as they are and return everything the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
