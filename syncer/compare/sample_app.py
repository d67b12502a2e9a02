"""A small "old" and "new" HTTP API on loopback, for the tests and the demo of
``syncer compare``: standard library only, one thread per connection.

Both versions put noise in every answer (a nanosecond timestamp and a random trace id,
in JSON bodies, inside arrays and in a plain-text body). The new version really differs
on two routes: ``/api/orders/{num}`` returns ``total`` as a number instead of a string,
and ``/api/search`` answers 404 to queries holding a digit. Everything else is the same.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Version = Literal["old", "new"]
DIFFERING_ROUTES = ("GET /api/orders/{num}", "GET /api/search")
NOISY_ROUTES = ("GET /api/users/{num}", "GET /api/items", "GET /health")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    app: SampleApp

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (nginx's mirror timeout) is expected here, not an error


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: bytes, content_type: str, head: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Served-At", str(time.time_ns()))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _handle(self, head: bool = False) -> None:
        app = self.server.app
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        app.enter(self.command, self.path, body)
        try:
            if app.delay:
                time.sleep(app.delay)  # a slow candidate (mirror and Ctrl-C tests)
            status, payload, content_type = app.respond(self.command, self.path, body)
            self._answer(status, payload, content_type, head)
        finally:
            app.leave()

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle(head=True)

    def do_POST(self) -> None:
        self._handle()


def _json(status: int, value: object) -> tuple[int, bytes, str]:
    return status, json.dumps(value).encode(), "application/json"


class SampleApp:
    def __init__(self, version: Version, delay: float = 0.0, host: str = "127.0.0.1", port: int = 0) -> None:
        self.version = version
        self.delay = delay
        self._server = _Server((host, port), _Handler)
        self._server.app = self
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.hits: list[tuple[str, str, bytes]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def enter(self, method: str, path: str, body: bytes) -> None:
        with self._lock:
            self.hits.append((method, path, body))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def hit_count(self) -> int:
        with self._lock:
            return len(self.hits)

    def respond(self, method: str, target: str, body: bytes) -> tuple[int, bytes, str]:
        url = urllib.parse.urlsplit(target)
        query = dict(urllib.parse.parse_qsl(url.query))
        parts = [p for p in url.path.split("/") if p]
        noise = {"served_at": time.time_ns(), "trace_id": uuid.uuid4().hex}
        if method == "POST" and parts == ["api", "orders"]:
            return _json(201, {"created": True, "echo": body.decode("utf-8", "replace"), **noise})
        if parts == ["health"]:
            return 200, f"ok {time.time_ns()}\n".encode(), "text/plain"
        if len(parts) == 3 and parts[:2] == ["api", "users"] and parts[2].isdigit():
            n = int(parts[2])
            return _json(200, {"id": n, "name": f"user-{n}", "roles": ["reader"], **noise})
        if len(parts) == 3 and parts[:2] == ["api", "orders"] and parts[2].isdigit():
            n = int(parts[2])
            total: object = f"{n * 1.5:.2f}" if self.version == "old" else n * 1.5
            return _json(200, {"id": n, "total": total, "currency": "EUR", **noise})
        if parts == ["api", "items"]:
            page = int(query.get("page", "1")) if query.get("page", "1").isdigit() else 1
            items = [{"sku": f"sku-{page}-{i}", "ts": time.time_ns()} for i in range(3)]
            return _json(200, {"page": page, "items": items, **noise})
        if parts == ["api", "search"]:
            q = query.get("q", "")
            if self.version == "new" and any(ch.isdigit() for ch in q):
                return _json(404, {"error": "not found", **noise})
            return _json(200, {"q": q, "results": [q.upper()], **noise})
        if len(parts) == 2 and parts[0] == "static":  # /static/<n>.txt: the same in both versions
            return 200, f"static {parts[1]}\n".encode(), "text/plain"
        return _json(404, {"error": "no route", **noise})

    def start(self) -> SampleApp:
        self._thread = threading.Thread(
            target=lambda: self._server.serve_forever(poll_interval=0.05), name=f"sample-{self.version}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SampleApp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def traffic() -> list[tuple[str, str]]:
    """A fixed mix of requests over every route (method, URI)."""
    out: list[tuple[str, str]] = []
    for n in range(1, 11):
        out += [("GET", f"/api/users/{n}"), ("GET", f"/api/orders/{n}"), ("GET", f"/api/items?page={n}")]
        out.append(("GET", f"/api/search?q={'abc' if n % 2 else f'x{n}'}"))
        out.append(("GET", f"/static/{n}.txt"))
    out += [("GET", "/health")] * 5 + [("HEAD", "/api/users/3")] * 2 + [("POST", "/api/orders")] * 2
    return out
