"""Each fault, in-process (dev.faults) and over HTTP (/_dev/faults)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import consul
import pytest
import requests

from syncer.devconsul import DevConsul
from syncer.devconsul.http import CONNLIMIT_RESPONSE
from syncer.testing.wait import wait_until

WEB = "/v1/health/service/web"


def test_error_for_the_next_three_requests_to_a_path(
    register_web: Callable[..., None], dev: DevConsul, http: requests.Session
) -> None:
    register_web()
    dev.faults.error(WEB, remaining=3)
    answers = [http.get(dev.url + WEB, timeout=5) for _ in range(4)]
    assert [a.status_code for a in answers] == [500, 500, 500, 200]
    assert answers[0].text == "rpc error making call: No cluster leader"
    assert http.get(f"{dev.url}/v1/catalog/services", timeout=5).status_code == 200
    assert dev.faults.active() == []


def test_rate_limit_fault_sends_the_connlimit_bytes(dev: DevConsul) -> None:
    dev.faults.rate_limit(WEB, remaining=1)
    with socket.create_connection(("127.0.0.1", dev.port), timeout=5) as sock:
        sock.sendall(f"GET {WEB} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert data == CONNLIMIT_RESPONSE


def test_header_faults(dev: DevConsul, http: requests.Session) -> None:
    dev.faults.known_leader_false(WEB)
    dev.faults.last_contact(90_000, WEB)
    dev.faults.force_index(0, WEB)
    resp = http.get(dev.url + WEB, timeout=5)
    assert resp.headers["X-Consul-KnownLeader"] == "false"
    assert resp.headers["X-Consul-LastContact"] == "90000"
    assert resp.headers["X-Consul-Index"] == "0"
    dev.faults.clear()
    assert http.get(dev.url + WEB, timeout=5).headers["X-Consul-KnownLeader"] == "true"


def test_delay(dev: DevConsul, http: requests.Session) -> None:
    dev.faults.delay(300, WEB, remaining=1)
    start = time.monotonic()
    http.get(dev.url + WEB, timeout=5)
    assert time.monotonic() - start >= 0.3


def test_empty_answer_like_a_restarted_follower(
    register_web: Callable[..., None], dev: DevConsul, http: requests.Session
) -> None:
    register_web()
    index = int(http.get(dev.url + WEB, timeout=5).headers["X-Consul-Index"])
    dev.faults.empty(WEB, remaining=1)
    # Even a blocking query answers at once.
    resp = http.get(dev.url + WEB, params={"index": str(index), "wait": "5s"}, timeout=5)
    assert (resp.status_code, resp.json()) == (200, [])
    assert http.get(dev.url + WEB, timeout=5).json() != []
    dev.faults.empty("/v1/catalog/services", remaining=1, index=2)
    services = http.get(f"{dev.url}/v1/catalog/services", timeout=5)
    assert (services.json(), services.headers["X-Consul-Index"]) == ({}, "2")


def test_truncated_and_non_json_bodies(
    register_web: Callable[..., None], dev: DevConsul, client: consul.Consul
) -> None:
    register_web()
    dev.faults.truncate(WEB, remaining=1)
    with pytest.raises(requests.exceptions.RequestException):
        requests.get(dev.url + WEB, timeout=5)
    dev.faults.non_json(WEB, remaining=1)
    with pytest.raises(consul.ConsulException, match="Failed to decode JSON"):
        client.health.service("web")
    assert client.health.service("web")[1][0]["Service"]["ID"] == "web1"


def test_down_closes_connections_and_cuts_watchers(dev: DevConsul, http: requests.Session) -> None:
    index = int(http.get(dev.url + WEB, timeout=5).headers["X-Consul-Index"])
    errors: list[BaseException] = []

    def watch() -> None:
        try:
            requests.get(dev.url + WEB, params={"index": str(index), "wait": "10s"}, timeout=15)
        except requests.RequestException as exc:
            errors.append(exc)

    watcher = threading.Thread(target=watch, daemon=True)
    start = time.monotonic()
    watcher.start()
    wait_until(lambda: dev.store.waiting >= 1, message="watcher parked")
    dev.faults.down(WEB)
    watcher.join(10)
    assert errors
    assert time.monotonic() - start < 5
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(dev.url + WEB, timeout=5)
    assert requests.get(f"{dev.url}/v1/status/leader", timeout=5).ok  # other paths still answer
    dev.faults.clear()
    assert requests.get(dev.url + WEB, timeout=5).ok


def test_reset_index_makes_indexes_go_backwards(
    register_web: Callable[..., None], dev: DevConsul, http: requests.Session
) -> None:
    register_web()
    for _ in range(5):
        http.put(f"{dev.url}/v1/kv/churn", data=b"x", timeout=5)
    http.put(f"{dev.url}/v1/agent/check/fail/service:web1", timeout=5)
    index = int(http.get(dev.url + WEB, timeout=5).headers["X-Consul-Index"])
    result: list[requests.Response] = []
    watcher = threading.Thread(
        target=lambda: result.append(
            requests.get(dev.url + WEB, params={"index": str(index), "wait": "10s"}, timeout=15)
        ),
        daemon=True,
    )
    watcher.start()
    wait_until(lambda: dev.store.waiting >= 1, message="watcher parked in its blocking query")
    dev.faults.reset_index(5)
    watcher.join(5)
    assert result, "the watcher should return at once after a reset"
    assert int(result[0].headers["X-Consul-Index"]) <= 5 < index
    # Writes go on from the reset index.
    http.put(f"{dev.url}/v1/agent/check/pass/service:web1", timeout=5)
    assert int(http.get(dev.url + WEB, timeout=5).headers["X-Consul-Index"]) == 6


def test_fault_api_over_http(dev: DevConsul, http: requests.Session) -> None:
    created = http.put(
        f"{dev.url}/_dev/faults",
        json=[
            {"kind": "error", "path": WEB, "remaining": 2, "status": 503, "body": "busy"},
            {"kind": "known_leader", "path": WEB},
        ],
        timeout=5,
    ).json()
    assert [f["kind"] for f in created] == ["error", "known_leader"]
    assert len(http.get(f"{dev.url}/_dev/faults", timeout=5).json()) == 2
    resp = http.get(dev.url + WEB, timeout=5)
    assert (resp.status_code, resp.text) == (503, "busy")
    assert http.delete(f"{dev.url}/_dev/faults/{created[1]['id']}", timeout=5).json() is True
    assert [f["kind"] for f in http.get(f"{dev.url}/_dev/faults", timeout=5).json()] == ["error"]
    assert http.delete(f"{dev.url}/_dev/faults", timeout=5).json() is True
    assert http.get(f"{dev.url}/_dev/faults", timeout=5).json() == []
    bad = http.put(f"{dev.url}/_dev/faults", json={"kind": "meteor"}, timeout=5)
    assert bad.status_code == 400
    assert "unknown fault kind" in bad.text
    reset = http.put(f"{dev.url}/_dev/faults", json={"kind": "reset_index", "index": 3}, timeout=5)
    assert reset.json() == [{"kind": "reset_index", "index": 3}]
    assert dev.store.raft_index == 3
