"""The per-client connection cap answers go-connlimit's exact 429 bytes."""

from __future__ import annotations

import socket

import requests

from syncer.devconsul import DevConsul
from syncer.devconsul.http import CONNLIMIT_RESPONSE
from syncer.testing.wait import wait_until

EXPECTED = (
    b"HTTP/1.1 429 Too Many Requests\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: 81\r\n"
    b"Connection: close\r\n\r\n"
    b"Your IP is issuing too many concurrent connections, please rate limit your calls\n"
)


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(4096):
        chunks.append(chunk)
    return b"".join(chunks)


def test_connection_past_the_cap_gets_the_exact_429() -> None:
    assert CONNLIMIT_RESPONSE == EXPECTED
    with DevConsul(port=0, max_conns_per_client=3) as dev:
        held = [socket.create_connection(("127.0.0.1", dev.port), timeout=5) for _ in range(3)]
        try:
            wait_until(lambda: dev.connections_by_client().get("127.0.0.1") == 3, message="3 connections counted")
            with socket.create_connection(("127.0.0.1", dev.port), timeout=5) as extra:
                extra.sendall(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n")
                assert _read_all(extra) == EXPECTED
            assert dev.stats()["rejected_connections"] == 1
            held.pop().close()
            wait_until(lambda: dev.connections_by_client().get("127.0.0.1") == 2, message="a slot freed")
            assert requests.get(f"{dev.url}/v1/status/leader", timeout=5).status_code == 200
        finally:
            for sock in held:
                sock.close()
        wait_until(lambda: dev.connections_by_client() == {}, message="all connections released")


def test_keep_alive_reuses_one_connection_and_stats_count_it(dev: DevConsul) -> None:
    with requests.Session() as session:
        for _ in range(5):
            assert session.get(f"{dev.url}/v1/status/leader", timeout=5).ok
        assert dev.connections_by_client() == {"127.0.0.1": 1}
        stats = session.get(f"{dev.url}/_dev/stats", timeout=5).json()
    assert stats["connections"] == {"127.0.0.1": 1}
    assert stats["requests"]["GET /v1/status/leader"] == 5


def test_a_client_that_hangs_up_mid_poll_frees_its_connection(dev: DevConsul) -> None:
    index = requests.get(f"{dev.url}/v1/catalog/services", timeout=5).headers["X-Consul-Index"]
    sock = socket.create_connection(("127.0.0.1", dev.port), timeout=5)
    sock.sendall(f"GET /v1/catalog/services?index={index}&wait=30s HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    wait_until(lambda: dev.connections_by_client().get("127.0.0.1") == 1, message="poll in flight")
    sock.close()
    wait_until(lambda: dev.connections_by_client() == {}, timeout=3, message="connection released")


def test_options_head_and_pretty(dev: DevConsul) -> None:
    options = requests.options(f"{dev.url}/v1/catalog/services", timeout=5)
    assert (options.status_code, options.headers["Allow"]) == (200, "OPTIONS,GET")
    head = requests.head(f"{dev.url}/v1/status/leader", timeout=5)
    assert head.status_code == 405  # Consul registers GET only; HEAD is not special-cased
    pretty = requests.get(f"{dev.url}/v1/status/peers?pretty", timeout=5)
    assert pretty.text == '[\n    "127.0.0.1:8300"\n]\n'
    root = requests.get(dev.url, timeout=5)
    assert root.text.startswith("Consul Agent: UI disabled.")
