"""A test nginx that answers each request with the pool stages 1-4 chose, in both modes.

Reload side: the rendered ``geo``/``map`` blocks and ``return 200 $syncer_gray_<entry>``.
Api side: ``syncer.gray`` compiled from the pushed payload, ``ngx.print(decide())``.
Both listen on 127.0.0.1 and ::1; ``ask`` sends from a chosen loopback source address.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syncer import resources
from syncer.routing.events import KVRejection
from syncer.routing.kv_payload import gray_payload
from syncer.routing.kv_rules import GrayRules
from syncer.routing.kv_source import KVSource
from syncer.routing.kv_table import gray_table
from syncer.routing.realip import realip_lines
from syncer.routing.render_gray import gray_var, render_gray
from syncer.testing.nginx import LUA_MODULES, NginxProcess
from syncer.testing.ports import free_port


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


def kv_body(values: Mapping[str, Any], prefix: str = "syncer/") -> list[dict[str, Any]]:
    """A ``?recurse`` answer as Consul gives it (base64 values) for ``{key: JSON value}``."""
    body = []
    for i, (key, value) in enumerate(sorted(values.items()), start=1):
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        body.append({"Key": prefix + key, "Value": base64.b64encode(raw).decode(), "ModifyIndex": i})
    return body


def rules_from(values: Mapping[str, Any]) -> tuple[GrayRules, tuple[KVRejection, ...]]:
    source = KVSource(client=None)  # type: ignore[arg-type]  # absorb() never asks Consul
    rejections = source.absorb(kv_body(values))
    return source.rules(), rejections


@dataclass
class Reply:
    status: int
    body: str


def ask_via_proxy_protocol(port: int, path: str, *, source: str, client: str) -> Reply:
    """A request whose PROXY protocol v1 header claims ``client``, sent from ``source``."""
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as sock:
        family = "TCP6" if ":" in client else "TCP4"
        dest = "::1" if ":" in client else "127.0.0.1"
        sock.sendall(f"PROXY {family} {client} {dest} 40000 {port}\r\n".encode())
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: plain.test\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return Reply(int(head.split()[1]), body.decode())


def ask(
    port: int,
    path: str = "/",
    *,
    source: str = "127.0.0.1",
    host: str = "plain.test",
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """One GET from ``source`` (127.0.0.x or ::1) to the same family's loopback."""
    target = "::1" if ":" in source else "127.0.0.1"
    conn = http.client.HTTPConnection(target, port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", path, headers={"Host": host, "Connection": "close", **(headers or {})})
        response = conn.getresponse()
        return Reply(response.status, response.read().decode())
    finally:
        conn.close()


@dataclass
class EchoNginx:
    """Both modes side by side: ``reload_port`` and ``api_port`` (plus realip variants)."""

    prefix: Path
    entries: tuple[str, ...]
    trusted: tuple[str, ...] = ("127.0.0.5",)
    reload_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    reload_xff_port: int = field(default_factory=free_port)
    api_xff_port: int = field(default_factory=free_port)
    reload_pp_port: int = field(default_factory=free_port)
    api_pp_port: int = field(default_factory=free_port)
    nginx: NginxProcess = field(init=False)

    def __post_init__(self) -> None:
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.nginx = NginxProcess(self.prefix, self._conf())

    def _listen(self, port: int, extra: str = "") -> str:
        six = f" listen [::1]:{port}{extra};" if ipv6_loopback() else ""
        return f"listen 127.0.0.1:{port}{extra};{six}"

    def _servers(self, port: int, api: bool, realip: list[str], proxy_protocol: bool = False) -> str:
        locations = []
        for entry in self.entries:
            if api:
                body = f'content_by_lua_block {{ ngx.print(require("grayecho").decide("{entry}")) }}'
            else:
                body = f'return 200 "${gray_var(entry)}";'
            locations.append(f"location = /{entry} {{ default_type text/plain; {body} }}")
        listen = self._listen(port, " proxy_protocol" if proxy_protocol else "")
        return f"server {{ {listen} {' '.join(realip)}\n    {chr(10).join(locations)}\n}}"

    def _conf(self) -> str:
        realip = realip_lines("x-forwarded-for", self.trusted)
        proxied = realip_lines("proxy-protocol", self.trusted)
        (self.prefix / "lua").mkdir(exist_ok=True)
        (self.prefix / "lua" / "grayecho.lua").write_text(
            """
local gray = require "syncer.gray"
local json = require "syncer.json"
local _M = {}
local compiled = {}
function _M.load(path)
    local f = assert(io.open(path, "rb"))
    local spec = assert(json.decode(f:read("*a")))
    f:close()
    for entry, payload in pairs(spec) do
        compiled[entry] = assert(gray.compile(payload))
    end
end
function _M.decide(entry)
    local c = compiled[entry]
    return c and gray.decide(c) or ""
end
return _M
"""
        )
        self.write_rules(GrayRules())
        return f"""{LUA_MODULES}
worker_processes 2;
error_log logs/error.log warn;
pid logs/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    lua_package_path "{self.prefix}/lua/?.lua;{resources.lua_dir()}/?.lua;;";
    init_by_lua_block {{ require("grayecho").load("{self.prefix}/gray.json") }}
    include {self.prefix}/gray.conf;
    {self._servers(self.reload_port, False, [])}
    {self._servers(self.api_port, True, [])}
    {self._servers(self.reload_xff_port, False, realip)}
    {self._servers(self.api_xff_port, True, realip)}
    {self._servers(self.reload_pp_port, False, proxied, proxy_protocol=True)}
    {self._servers(self.api_pp_port, True, proxied, proxy_protocol=True)}
}}
"""

    def write_rules(self, rules: GrayRules) -> None:
        """Render both modes' forms of ``rules`` (take effect on start or reload)."""
        tables = [gray_table(e) for e in rules.entries]
        (self.prefix / "gray.conf").write_text(render_gray(tables))
        payloads = {t.entry: gray_payload(t) for t in tables}
        (self.prefix / "gray.json").write_text(json.dumps(payloads) if payloads else "{}")

    def start(self) -> EchoNginx:
        self.nginx.start(wait_port=self.api_xff_port)
        return self

    def stop(self) -> None:
        self.nginx.stop()
