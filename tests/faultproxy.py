"""An HTTP proxy in front of the real admin endpoint that can be down, slow, or answer
5xx on demand: the endpoint's own failure modes, without touching nginx's traffic side.

Requests are forwarded verbatim (method, path, body, headers) to the target on a new
connection each; answers come back verbatim. Loopback only.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

Mode = Literal["pass", "down", "slow", "error"]
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class Behaviour:
    mode: Mode = "pass"
    delay: float = 2.0  # slow: seconds before forwarding
    status: int = 503  # error: the status answered
    requests: int = 0  # how many requests arrived (all modes)


class FaultProxy:
    def __init__(self, target_port: int) -> None:
        self.behaviour = Behaviour()
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                proxy._handle(self, target_port)

            do_PUT = do_DELETE = do_POST = do_GET

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def set(self, mode: Mode, **changes: float) -> None:
        with self._lock:
            self.behaviour.mode = mode
            for key, value in changes.items():
                setattr(self.behaviour, key, value)

    @property
    def requests(self) -> int:
        with self._lock:
            return self.behaviour.requests

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, handler: BaseHTTPRequestHandler, target_port: int) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        with self._lock:
            self.behaviour.requests += 1
            mode, delay, status = self.behaviour.mode, self.behaviour.delay, self.behaviour.status
        if mode == "down":
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)  # no answer at all
            return
        if mode == "error":
            payload = b'{"error": "simulated failure"}\n'
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            return
        if mode == "slow":
            time.sleep(delay)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP}
        conn = http.client.HTTPConnection("127.0.0.1", target_port, timeout=30)
        try:
            conn.request(handler.command, handler.path, body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
        finally:
            conn.close()
        try:
            handler.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in _HOP_BY_HOP:
                    handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:
            handler.close_connection = True  # the client gave up (its timeout) while we were slow
