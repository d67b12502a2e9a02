"""The agent's own HTTP endpoint: ``/metrics`` (Prometheus) and ``/healthz``.

Loopback or a unix socket only, unless the operator explicitly allows more: it exposes
service names and addresses. Read-only, so no token is needed to scrape it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import socketserver
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from syncer.health import Verdict
from syncer.metrics import Metrics


class ListenRefused(ValueError):
    pass


def check_listen(listen: str, allow_remote: bool) -> None:
    """Refuse anything but loopback or a unix socket unless explicitly allowed."""
    if listen.startswith("unix:"):
        return
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not allow_remote:
        raise ListenRefused(f"{listen} is not a loopback address; set observe.allow_remote = true to allow it")


def _handler(metrics: Metrics, verdict: Callable[[], Verdict]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "syncer"

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes every few seconds would drown the agent's own log

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                v = verdict()
                body = json.dumps({"status": v.status, **v.detail}).encode()
                self._send(200 if v.ok else 503, body, "application/json")
            else:
                self._send(404, b'{"error": "not found"}', "application/json")

    return Handler


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        request, _ = super().get_request()
        return request, ("local", 0)  # BaseHTTPRequestHandler wants a (host, port) pair


class StatusServer:
    def __init__(self, listen: str, metrics: Metrics, verdict: Callable[[], Verdict]) -> None:
        handler = _handler(metrics, verdict)
        self.server: socketserver.BaseServer
        if listen.startswith("unix:"):
            path = Path(listen[5:])
            if path.exists():
                path.unlink()
            self.server = _UnixHTTPServer(str(path), handler)
            os.chmod(path, 0o660)
        else:
            host, port = listen.rsplit(":", 1)
            server = ThreadingHTTPServer((host.strip("[]"), int(port)), handler)
            server.daemon_threads = True
            self.server = server
        # shutdown() waits for serve_forever's next poll: 0.1s (not the default 0.5s) keeps
        # SIGTERM → exit prompt.
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, name="status", daemon=True
        )

    @property
    def port(self) -> int:
        address = self.server.server_address
        return int(address[1]) if isinstance(address, tuple) else 0

    def start(self) -> StatusServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
