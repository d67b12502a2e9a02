"""The admin endpoint against hostile or careless input: bytes that are not UTF-8, a
chunked body over the limit, a token file others can read, and a flood of connections
that never finish their request headers."""

from __future__ import annotations

import contextlib
import json
import resource
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests

from syncer.config import ApiSettings, ConfigError
from syncer.sinks.api import ApiSink
from syncer.testing.backends import BackendFarm
from syncer.testing.wait import wait_until

from .helpers import NEEDS_NGINX, TOKEN, ApiNginx, raw_http, server

pytestmark = NEEDS_NGINX

AUTH = f"Authorization: Bearer {TOKEN}\r\n".encode()


def answer(port: int, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """One HTTP/1.0 exchange (no chunked answer to undo): status and body bytes."""
    if body:
        head += b"Content-Length: %d\r\n" % len(body)
    raw = raw_http(port, head + b"Host: admin\r\n" + AUTH + b"\r\n" + body)
    status_line, _, rest = raw.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


# --- answers are valid JSON whatever the request carried --------------------------------------

BAD_BYTES = [
    (b"GET /upstreams/\xff\xfe HTTP/1.0\r\n", b""),
    (b"GET /nope\xc3\x28 HTTP/1.0\r\n", b""),
    (b"GET /upstreams/ab%FFcd HTTP/1.0\r\n", b""),
    (b"PUT /upstreams/web HTTP/1.0\r\nIf-Match: \xff\xfe\r\n", b'{"servers":[{"address":"10.0.0.1","port":80}]}'),
    (b"PUT /upstreams/web HTTP/1.0\r\n", b'{"servers":[{"address":"\xff\xfe\xed\xa0\x80","port":80}]}'),
    (b"PUT /upstreams/web HTTP/1.0\r\n", b'{"servers":[{"address":"10.0.0.1","port":80,"w\xe9ight":1}]}'),
    (b"PATCH /upstreams HTTP/1.0\r\n", b'{"upstreams":{"bad\xf0\x28name":{"servers":[]}}}'),
    (b"PUT /upstreams/web HTTP/1.0\r\n", b'{"servers":[{"address":"10.0.0.1","port":80}],"hash_on":"\xc0\xaf"}'),
]


@pytest.mark.parametrize(("head", "body"), BAD_BYTES)
def test_error_answers_are_valid_json_for_invalid_utf8(shared_api: ApiNginx, head: bytes, body: bytes) -> None:
    """Invalid UTF-8 in the path, a header or the body: the answer is still JSON a strict
    decoder accepts (each bad byte is shown as U+FFFD), never the raw bytes echoed."""
    status, text = answer(shared_api.admin_port, head, body)
    assert status in (200, 400, 404), (status, text)
    decoded = json.loads(text.decode("utf-8", errors="strict"))
    if status != 200:
        assert decoded["error"]
    if b"\xff" in head or b"\xff" in body:
        assert "\ufffd" in json.dumps(decoded, ensure_ascii=False)


# --- a chunked body over max_body ------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1_100_000, 16_384], ids=["one-big-chunk", "many-small-chunks"])
def test_oversized_chunked_body_is_json_400_and_never_hits_disk(shared_api: ApiNginx, chunk: int) -> None:
    """Transfer-Encoding: chunked past max_body: the JSON 400, and client_body_temp stays
    empty (the body is refused before it could be spooled)."""
    temp = shared_api.prefix / "temp_client_body"
    before = set(temp.iterdir()) if temp.exists() else set()
    total = 1_200_000
    chunks = b"".join(b"%x\r\n%s\r\n" % (n, b"x" * n) for n in [chunk] * (total // chunk)) + b"0\r\n\r\n"
    head = b"PUT /upstreams/chunked HTTP/1.1\r\nHost: admin\r\n" + AUTH
    raw = raw_http(shared_api.admin_port, head + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks)
    assert raw.startswith(b"HTTP/1.1 400"), raw[:200]
    body = raw.partition(b"\r\n\r\n")[2]
    assert b'"body too large' in body
    assert shared_api.admin("GET", "/upstreams/chunked").status_code == 404
    after = set(temp.iterdir()) if temp.exists() else set()
    assert after == before


# --- the token file must be private ------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o666])
def test_a_token_file_others_can_read_or_write_disables_the_api(fresh_api: ApiNginx, mode: int) -> None:
    """nginx's side: 503 for every request, and a log line naming the file and its mode."""
    fresh_api.token_file.chmod(mode)
    fresh_api.start()
    response = fresh_api.admin("GET", "/summary")
    assert response.status_code == 503
    error = response.json()["error"]
    assert f"readable or writable by group or others (mode {mode:04o})" in error
    assert str(fresh_api.token_file) in error
    assert "chmod 600" in fresh_api.nginx.error_log()


def test_a_private_token_file_works(fresh_api: ApiNginx) -> None:
    fresh_api.token_file.chmod(0o400)
    fresh_api.start()
    assert fresh_api.admin("GET", "/summary").status_code == 200


@pytest.mark.parametrize("mode", [0o644, 0o660, 0o602])
def test_syncer_refuses_a_token_file_others_can_read_or_write(tmp_path: Path, mode: int) -> None:
    """syncer's side: the api sink will not start with such a file; the error names the
    setting, the file and the mode, never the token."""
    token_file = tmp_path / "admin.token"
    token_file.write_text("s3cr3t-value\n")
    token_file.chmod(mode)
    with pytest.raises(ConfigError) as caught:
        ApiSink(ApiSettings(token_file=token_file, token="s3cr3t-value"))
    text = str(caught.value)
    assert "api.token_file" in text
    assert f"mode {mode:04o}" in text
    assert "s3cr3t" not in text


# --- idle connections on the admin port --------------------------------------------------------


@pytest.fixture
def farm_one(tmp_path: Path) -> Iterator[BackendFarm]:
    with BackendFarm(tmp_path / "farm", ["b1"]) as farm:
        yield farm


def test_half_sent_admin_requests_are_dropped_and_cannot_hold_the_budget(
    fresh_api: ApiNginx, farm_one: BackendFarm
) -> None:
    """400 connections to the admin port that send half a request header and stall:
    the traffic port keeps answering meanwhile, nginx closes them within the admin
    server's header timeout, and the admin API answers again right after."""
    fresh_api.with_options(worker_connections=1024)
    fresh_api.start()
    fresh_api.put_ok("web", [server("127.0.0.1", farm_one.ports["b1"])])
    with ExitStack() as stack:
        idle: list[socket.socket] = []
        for _ in range(400):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", fresh_api.admin_port), timeout=5))
            sock.sendall(b"GET /status HTTP/1.1\r\nHost: admin\r\n")  # never finished
            idle.append(sock)
        started = time.monotonic()
        for _ in range(10):
            assert fresh_api.request().status_code == 200

        def all_closed() -> bool:
            for sock in idle:
                sock.settimeout(0.01)
                try:
                    if sock.recv(1) != b"":
                        return False
                except TimeoutError:
                    return False
                except OSError:
                    pass  # reset: closed
            return True

        wait_until(all_closed, timeout=10, interval=0.2, message="nginx to drop the stalled admin connections")
        assert time.monotonic() - started < 5  # client_header_timeout 2s, plus slack
    assert fresh_api.admin("GET", "/summary").status_code == 200
    assert requests.get(f"http://127.0.0.1:{fresh_api.port}/", headers={"Host": "web"}, timeout=5).status_code == 200


STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")


@pytest.mark.skipif(not STREAM_MODULE.exists(), reason="needs nginx's stream module (libnginx-mod-stream)")
def test_a_flood_of_half_sent_admin_connections_cannot_starve_traffic(
    fresh_api: ApiNginx, farm_one: BackendFarm
) -> None:
    """With ``admin_socket`` the admin port sits behind a stream proxy whose limit_conn
    counts connections when they are accepted: 2,200 connections that send half a
    header and stall (more than both workers' worker_connections, 2 x 1,024) get 16
    slots, the rest are closed at once, and every traffic request meanwhile is answered."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2600:
        pytest.skip(f"needs 2,600 file descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2600), hard))
    # nginx's workers (nobody, when tests run as root) must reach the socket: a folder
    # they can traverse (pytest's tmp folders are 0700)
    socket_dir = Path(tempfile.mkdtemp(prefix="syncer-admin-"))
    socket_dir.chmod(0o711)
    socket_path = socket_dir / "admin.sock"
    fresh_api.with_options(admin_socket=str(socket_path), admin_connections=16, worker_connections=1024)
    fresh_api.start()
    fresh_api.put_ok("web", [server("127.0.0.1", farm_one.ports["b1"])])
    with ExitStack() as stack:
        flood = []
        for _ in range(2200):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", fresh_api.admin_port), timeout=5))
            with contextlib.suppress(OSError):  # an excess one may already be closed
                sock.sendall(b"GET /status HTTP/1.1\r\nHost: admin\r\n")
            flood.append(sock)
        answered = [fresh_api.request().status_code for _ in range(20)]
        assert answered == [200] * 20
    try:
        wait_until(lambda: fresh_api.admin("GET", "/summary").status_code == 200, timeout=10, message="admin API")
    finally:
        fresh_api.stop()
        shutil.rmtree(socket_dir, ignore_errors=True)
