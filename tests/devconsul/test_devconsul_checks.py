"""HTTP and TCP checks are really probed, with Consul's status rules."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import requests

from syncer.devconsul import DevConsul
from syncer.testing.wait import wait_until


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        body = b"ok\n"
        self.send_response(type(self).status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def backend() -> Iterator[tuple[HTTPServer, type[_Health]]]:
    handler = type("Health", (_Health,), {"status": 200})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler
    server.shutdown()
    server.server_close()


def _status(http: requests.Session, dev: DevConsul, check_id: str, wanted: str) -> bool:
    checks = http.get(f"{dev.url}/v1/agent/checks", timeout=5).json()
    return bool(checks.get(check_id, {}).get("Status") == wanted)


def test_http_check_follows_the_backend(
    dev: DevConsul, http: requests.Session, backend: tuple[HTTPServer, type[_Health]]
) -> None:
    server, handler = backend
    url = f"http://127.0.0.1:{server.server_address[1]}/health"
    body = {"Name": "web", "Check": {"HTTP": url, "Interval": "1s", "Timeout": "1s"}}
    assert http.put(f"{dev.url}/v1/agent/service/register", json=body, timeout=5).status_code == 200
    wait_until(lambda: _status(http, dev, "service:web", "passing"), timeout=5, message="HTTP check passing")
    output = http.get(f"{dev.url}/v1/agent/checks", timeout=5).json()["service:web"]["Output"]
    assert output == f"HTTP GET {url}: 200 OK Output: ok\n"
    handler.status = 429
    wait_until(lambda: _status(http, dev, "service:web", "warning"), timeout=5, message="429 is a warning")
    handler.status = 503
    wait_until(lambda: _status(http, dev, "service:web", "critical"), timeout=5, message="503 is critical")


def test_tcp_check(dev: DevConsul, http: requests.Session) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        body = {"Name": "db", "Check": {"TCP": f"127.0.0.1:{port}", "Interval": "1s"}}
        http.put(f"{dev.url}/v1/agent/service/register", json=body, timeout=5)
        wait_until(lambda: _status(http, dev, "service:db", "passing"), timeout=5, message="TCP check passing")
    finally:
        listener.close()
    wait_until(lambda: _status(http, dev, "service:db", "critical"), timeout=5, message="TCP check failing")
