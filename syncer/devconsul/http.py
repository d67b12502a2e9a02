"""The HTTP/1.1 request handler: parse, apply faults, dispatch, write like Go's net/http."""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from syncer.devconsul.api import Call, Response
from syncer.devconsul.faults import Fault, Plan
from syncer.devconsul.state import ClientGone

if TYPE_CHECKING:
    from syncer.devconsul.server import DevConsul

log = logging.getLogger("syncer.devconsul.http")

CONNLIMIT_MESSAGE = "Your IP is issuing too many concurrent connections, please rate limit your calls\n"
# hashicorp/go-connlimit HTTPConnStateFuncWithDefault429Handler, byte for byte.
CONNLIMIT_RESPONSE = (
    "HTTP/1.1 429 Too Many Requests\r\n"
    "Content-Type: text/plain\r\n"
    f"Content-Length: {len(CONNLIMIT_MESSAGE)}\r\n"
    "Connection: close\r\n\r\n"
    f"{CONNLIMIT_MESSAGE}"
).encode("ascii")
_MAP_SHAPED = ("/v1/catalog/services", "/v1/agent/services", "/v1/agent/checks")


class DevConsulHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "dev-consul"
    disable_nagle_algorithm = True  # headers and body go out in two writes; do not wait for ACKs
    dev: DevConsul

    def setup(self) -> None:
        super().setup()
        self.dev = self.server.dev  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._handle()

    do_PUT = do_POST = do_DELETE = do_OPTIONS = do_HEAD = do_PATCH = do_GET

    # ---------------------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        method = self.command
        body = self._read_body()
        plan = Plan() if path.startswith("/_dev/") else self.dev.faults.take(method, path)
        if plan.delay:
            time.sleep(plan.delay)
        terminal = plan.terminal
        if terminal is not None and terminal.kind == "down":
            self.dev.count_request(method, path, 0)
            self._drop()
            return
        if terminal is not None and terminal.kind == "rate_limit":
            self.dev.count_request(method, path, 429)
            self._send_raw(CONNLIMIT_RESPONSE)
            return
        call = Call(
            method,
            path,
            parse_qs(parts.query, keep_blank_values=True),
            {k.lower(): v for k, v in self.headers.items()},
            body,
            self.client_address[0],
            cancelled=lambda: self._gone(method, path),
            nonblocking=terminal is not None and terminal.kind == "empty",
        )
        response = self._respond(call, terminal)
        if response is None:
            self.dev.count_request(method, path, 0)
            self._drop()
            return
        response.headers.update(plan.headers if "X-Consul-Index" in response.headers else {})
        if plan.index is not None and "X-Consul-Index" in response.headers:
            response.headers["X-Consul-Index"] = str(plan.index)
        self.dev.count_request(method, path, response.status)
        self._write(response, truncate=terminal is not None and terminal.kind == "truncate")

    def _respond(self, call: Call, terminal: Fault | None) -> Response | None:
        if terminal is not None and terminal.kind == "error":
            text = terminal.body if terminal.body is not None else ""
            return Response(terminal.status, text.encode(), "text/plain; charset=utf-8")
        if terminal is not None and terminal.kind == "non_json":
            return Response(200, (terminal.body or "").encode(), terminal.content_type or "text/html")
        try:
            response = self.dev.api.dispatch(call)
        except ClientGone:
            return None
        if terminal is not None and terminal.kind == "empty":
            shape = "{}" if call.path in _MAP_SHAPED else "[]"
            response.status, response.content_type = 200, "application/json"
            response.body = (terminal.body if terminal.body is not None else shape).encode()
            if terminal.index is not None:
                response.headers["X-Consul-Index"] = str(terminal.index)
        return response

    def _gone(self, method: str, path: str) -> bool:
        """True when the client hung up (EOF pending) or an agent-down fault covers us."""
        if self.dev.faults.agent_down(method, path):
            return True
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _write(self, response: Response, truncate: bool = False) -> None:
        body = response.body or b""
        try:
            self.send_response_only(response.status)
            self.send_header("Date", formatdate(usegmt=True))
            if response.content_type and body:
                self.send_header("Content-Type", response.content_type)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body[: len(body) // 2] if truncate else body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True
            return
        if truncate:
            self._drop()

    def _send_raw(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            pass
        self._drop()

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
