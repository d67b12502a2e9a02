"""The admin API of api mode, against a real nginx running the shipped Lua."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from syncer.testing.backends import BackendFarm
from syncer.testing.wait import wait_until

from .helpers import NEEDS_NGINX, TOKEN, ApiNginx, raw_http, server

pytestmark = NEEDS_NGINX

S1 = server("127.0.0.1", 8001)
S2 = server("127.0.0.1", 8002)


def full(address: str, port: int, **extra: Any) -> dict[str, Any]:
    """A Server as the API returns it: every field present, defaults filled in."""
    base: dict[str, Any] = {
        "address": address,
        "port": port,
        "weight": 1,
        "max_fails": 1,
        "fail_timeout": 10,
        "max_conns": 0,
        "backup": False,
        "down": False,
    }
    base.update(extra)
    return base


# --- authentication --------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "path"),
    [
        ({}, "/upstreams"),
        ({"Authorization": "Bearer wrong-token"}, "/upstreams"),
        ({"Authorization": f"Bearer {TOKEN}x"}, "/upstreams"),
        ({"Authorization": f"Bearer {TOKEN[:-1]}"}, "/status"),
        ({"Authorization": f"Basic {TOKEN}"}, "/upstreams"),
        ({"Authorization": TOKEN}, "/upstreams"),
        ({}, "/no/such/path"),
    ],
)
def test_missing_or_wrong_token_is_401(shared_api: ApiNginx, headers: dict[str, str], path: str) -> None:
    """Without the right bearer token every route answers 401 JSON with WWW-Authenticate."""
    response = shared_api.admin("GET", path, headers=headers, token=None)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.headers["Content-Type"] == "application/json"
    assert "error" in response.json()


def test_bearer_scheme_is_case_insensitive(shared_api: ApiNginx) -> None:
    """`bearer <token>` works like `Bearer <token>`."""
    response = shared_api.admin("GET", "/upstreams", headers={"Authorization": f"bearer {TOKEN}"})
    assert response.status_code == 200


def test_unauthenticated_put_changes_nothing(shared_api: ApiNginx) -> None:
    """A PUT with a wrong token is refused before the body is looked at."""
    response = shared_api.admin("PUT", "/upstreams/noauth", {"servers": [S1]}, token="nope")
    assert response.status_code == 401
    assert shared_api.admin("GET", "/upstreams/noauth").status_code == 404


@pytest.mark.parametrize("content", [None, "", "  \n"])
def test_missing_or_empty_token_file_refuses_everything(fresh_api: ApiNginx, content: str | None) -> None:
    """No usable token: every request is refused (fail closed) and the reason is logged."""
    if content is None:
        fresh_api.token_file.unlink(missing_ok=True)
    else:
        fresh_api.token_file.write_text(content)
    fresh_api.start()
    for token in (TOKEN, "", None):
        response = fresh_api.admin("GET", "/upstreams", token=token)
        assert response.status_code == 503
        assert "admin API disabled" in response.json()["error"]
    assert "admin API disabled" in fresh_api.nginx.error_log()


# --- routes and methods -------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/upstreams", 405),
        ("DELETE", "/upstreams", 405),
        ("POST", "/upstreams/web", 405),
        ("PATCH", "/upstreams/web", 405),
        ("PUT", "/status", 405),
        ("GET", "/", 404),
        ("GET", "/upstreamsx", 404),
        ("GET", "/api/upstreams", 404),
    ],
)
def test_other_methods_and_paths(shared_api: ApiNginx, method: str, path: str, status: int) -> None:
    """Unknown paths are 404, known paths with another method are 405; both JSON."""
    response = shared_api.admin(method, path)
    assert response.status_code == status
    assert "error" in response.json()
    if status == 405:
        assert "GET" in response.headers["Allow"]


@pytest.mark.parametrize(
    "name",
    ["-starts-with-dash", ".dot", "a" * 129, "has%20space", "semi%3Bcolon", "a/b", "%7D", ""],
)
def test_bad_upstream_name_is_400(shared_api: ApiNginx, name: str) -> None:
    """Names must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$, for every method."""
    for method in ("GET", "PUT", "DELETE"):
        response = shared_api.admin(method, f"/upstreams/{name}", {"servers": [S1]})
        assert response.status_code == 400, (method, name, response.text)
        assert "invalid upstream name" in response.json()["error"]


def test_longest_valid_name_is_accepted(shared_api: ApiNginx) -> None:
    """128 characters with dots, dashes and underscores is a valid name."""
    name = "A0._-" + "x" * 123
    assert shared_api.put(name, [S1]).status_code == 200
    assert shared_api.admin("DELETE", f"/upstreams/{name}").status_code == 200


# --- PUT / GET / DELETE ----------------------------------------------------------------


def test_put_get_delete_roundtrip(shared_api: ApiNginx) -> None:
    """PUT answers like GET; GET /upstreams lists it; DELETE removes it; then 404."""
    put = shared_api.put("roundtrip", [S1, {**S2, "weight": 5, "backup": True}], hash_on="remote_addr")
    assert put.status_code == 200
    body = put.json()
    generation = shared_api.get_json("/upstreams")["generation"]
    assert body == {
        "name": "roundtrip",
        "version": 1,
        "servers": [full("127.0.0.1", 8001), full("127.0.0.1", 8002, weight=5, backup=True)],
        "hash_on": "remote_addr",
        "generation": generation,
    }
    assert put.headers["ETag"] == '"1"'

    get = shared_api.admin("GET", "/upstreams/roundtrip")
    assert get.status_code == 200
    assert get.json() == body
    assert get.headers["ETag"] == '"1"'

    listing = shared_api.get_json("/upstreams")
    assert listing["upstreams"]["roundtrip"] == {
        "version": 1,
        "servers": body["servers"],
        "hash_on": "remote_addr",
    }

    deleted = shared_api.admin("DELETE", "/upstreams/roundtrip")
    assert deleted.status_code == 200
    assert deleted.json() == {"name": "roundtrip", "deleted": True}
    missing = shared_api.admin("GET", "/upstreams/roundtrip")
    assert missing.status_code == 404
    assert missing.json() == {"error": 'upstream "roundtrip" not found'}
    assert shared_api.admin("DELETE", "/upstreams/roundtrip").status_code == 404
    assert "roundtrip" not in shared_api.get_json("/upstreams")["upstreams"]


def test_versions_bump_only_on_change(shared_api: ApiNginx) -> None:
    """Each real change adds 1; an identical PUT answers 200 with the same version."""
    assert shared_api.put_ok("versions", [S1])["version"] == 1
    assert shared_api.put_ok("versions", [S1])["version"] == 1
    # defaults spelled out are the same content
    assert shared_api.put_ok("versions", [full("127.0.0.1", 8001)])["version"] == 1
    assert shared_api.put_ok("versions", [S1, S2])["version"] == 2
    assert shared_api.put_ok("versions", [S1, S2], hash_on="remote_addr")["version"] == 3
    assert shared_api.put_ok("versions", [S1, S2], hash_on=None)["version"] == 4
    # order of servers is content too (it is the round-robin order)
    assert shared_api.put_ok("versions", [S2, S1])["version"] == 5


def test_versions_continue_after_delete(shared_api: ApiNginx) -> None:
    """A re-created upstream does not reuse versions within a generation."""
    shared_api.put_ok("recreated", [S1])
    shared_api.put_ok("recreated", [S2])
    assert shared_api.admin("DELETE", "/upstreams/recreated").status_code == 200
    assert shared_api.put_ok("recreated", [S1])["version"] == 3


def test_if_match_compare_and_set(shared_api: ApiNginx) -> None:
    """If-Match with the current version writes; a stale one is 409 with the current version."""
    shared_api.put_ok("cas", [S1])
    stale = shared_api.admin("PUT", "/upstreams/cas", {"servers": [S2]}, headers={"If-Match": '"7"'})
    assert stale.status_code == 409
    assert stale.json() == {"error": "version mismatch", "version": 1}
    assert shared_api.get_json("/upstreams/cas")["servers"] == [full("127.0.0.1", 8001)]

    ok = shared_api.admin("PUT", "/upstreams/cas", {"servers": [S2]}, headers={"If-Match": '"1"'})
    assert ok.status_code == 200
    assert ok.json()["version"] == 2
    bare = shared_api.admin("PUT", "/upstreams/cas", {"servers": [S1]}, headers={"If-Match": "2"})
    assert bare.json()["version"] == 3
    star = shared_api.admin("PUT", "/upstreams/cas", {"servers": [S2]}, headers={"If-Match": "*"})
    assert star.json()["version"] == 4

    bad = shared_api.admin("PUT", "/upstreams/cas", {"servers": [S1]}, headers={"If-Match": "abc"})
    assert bad.status_code == 400

    wrong_delete = shared_api.admin("DELETE", "/upstreams/cas", headers={"If-Match": '"3"'})
    assert wrong_delete.status_code == 409
    assert wrong_delete.json()["version"] == 4
    assert shared_api.admin("DELETE", "/upstreams/cas", headers={"If-Match": '"4"'}).status_code == 200


def test_if_match_on_missing_upstream_is_409(shared_api: ApiNginx) -> None:
    """If-Match (a version or *) never creates an upstream: 409 with version null."""
    for value in ('"1"', "*"):
        response = shared_api.admin("PUT", "/upstreams/cas-missing", {"servers": [S1]}, headers={"If-Match": value})
        assert response.status_code == 409
        assert response.json() == {"error": "version mismatch", "version": None}
    assert shared_api.admin("GET", "/upstreams/cas-missing").status_code == 404


def test_if_none_match_star_creates_only(shared_api: ApiNginx) -> None:
    """If-None-Match: * writes only when the upstream does not exist yet."""
    first = shared_api.admin("PUT", "/upstreams/create-only", {"servers": [S1]}, headers={"If-None-Match": "*"})
    assert first.status_code == 200
    second = shared_api.admin("PUT", "/upstreams/create-only", {"servers": [S2]}, headers={"If-None-Match": "*"})
    assert second.status_code == 409
    assert second.json()["version"] == 1


def test_empty_servers_needs_allow_empty(shared_api: ApiNginx) -> None:
    """An empty list is refused unless allow_empty is true; then it is stored as []."""
    shared_api.put_ok("emptied", [S1])
    refused = shared_api.put("emptied", [])
    assert refused.status_code == 400
    assert "allow_empty" in refused.json()["error"]
    emptied = shared_api.put_ok("emptied", [], allow_empty=True)
    assert emptied["servers"] == []
    assert emptied["version"] == 2
    assert shared_api.get_json("/upstreams")["upstreams"]["emptied"]["servers"] == []


def test_ipv6_and_options_roundtrip(shared_api: ApiNginx) -> None:
    """IPv6 literals and every option come back as sent."""
    servers = [
        server("::1", 80, weight=65535, max_fails=0, fail_timeout=0.5, max_conns=10, down=True),
        server("2001:db8::10", 443, max_fails=1000, fail_timeout=86400),
        server("10.0.0.1", 65535, backup=True),
    ]
    body = shared_api.put_ok("options", servers)
    assert body["servers"] == [
        full("::1", 80, weight=65535, max_fails=0, fail_timeout=0.5, max_conns=10, down=True),
        full("2001:db8::10", 443, max_fails=1000, fail_timeout=86400),
        full("10.0.0.1", 65535, backup=True),
    ]


# --- bad payloads ------------------------------------------------------------------------------

OK = {"address": "127.0.0.1", "port": 8080}
BIG = json.dumps({"servers": [OK], "pad": "x" * (1024 * 1024)}).encode()

BAD_PAYLOADS: list[tuple[str, bytes, str]] = [
    ("bad JSON", b"{not json", "invalid JSON"),
    ("truncated JSON", b'{"servers": [{"address": "127.0.0.1", "port": 80', "invalid JSON"),
    ("empty body", b"", "invalid JSON"),
    ("NaN", b'{"servers": [{"address": "127.0.0.1", "port": NaN}]}', "invalid JSON"),
    ("hex number", b'{"servers": [{"address": "127.0.0.1", "port": 0x50}]}', "invalid JSON"),
    ("array body", b"[1, 2]", "body must be a JSON object"),
    ("string body", b'"servers"', "body must be a JSON object"),
    ("null body", b"null", "body must be a JSON object"),
    ("no servers", b"{}", "servers: required"),
    ("unknown field", json.dumps({"servers": [OK], "extra": 1}).encode(), 'unknown field "extra"'),
    (
        "unknown server field",
        json.dumps({"servers": [{**OK, "wieght": 2}]}).encode(),
        'servers[0]: unknown field "wieght"',
    ),
    ("servers not a list", json.dumps({"servers": {"a": OK}}).encode(), "servers: must be an array"),
    ("server not an object", json.dumps({"servers": [OK, 5]}).encode(), "servers[1]: must be an object"),
    ("server as a list", json.dumps({"servers": [["127.0.0.1", 80]]}).encode(), "servers[0]: must be an object"),
    ("no address", json.dumps({"servers": [{"port": 80}]}).encode(), "servers[0].address: required"),
    ("hostname", json.dumps({"servers": [{**OK, "address": "backend.local"}]}).encode(), "servers[0].address"),
    ("localhost", json.dumps({"servers": [{**OK, "address": "localhost"}]}).encode(), "host names"),
    ("IPv4 out of range", json.dumps({"servers": [{**OK, "address": "10.0.0.256"}]}).encode(), "IPv4"),
    ("IPv4 leading zero", json.dumps({"servers": [{**OK, "address": "10.0.0.01"}]}).encode(), "leading zeros"),
    ("IPv4 three parts", json.dumps({"servers": [{**OK, "address": "10.0.1"}]}).encode(), "servers[0].address"),
    ("IPv6 bracketed", json.dumps({"servers": [{**OK, "address": "[::1]"}]}).encode(), "servers[0].address"),
    ("IPv6 zone", json.dumps({"servers": [{**OK, "address": "fe80::1%eth0"}]}).encode(), "zone"),
    ("IPv6 two ::", json.dumps({"servers": [{**OK, "address": "1::2::3"}]}).encode(), "IPv6"),
    ("address with port", json.dumps({"servers": [{**OK, "address": "127.0.0.1:80"}]}).encode(), "port field"),
    ("IPv6 with port", json.dumps({"servers": [{**OK, "address": "[::1]:80"}]}).encode(), "port field"),
    ("nginx syntax in address", json.dumps({"servers": [{**OK, "address": "1.2.3.4;}"}]}).encode(), "address"),
    ("newline in address", json.dumps({"servers": [{**OK, "address": "1.2.3.4\n"}]}).encode(), "address"),
    ("address not a string", json.dumps({"servers": [{**OK, "address": 2130706433}]}).encode(), "address"),
    ("port 0", json.dumps({"servers": [{**OK, "port": 0}]}).encode(), "servers[0].port"),
    ("port 65536", json.dumps({"servers": [{**OK, "port": 65536}]}).encode(), "servers[0].port"),
    ("port string", json.dumps({"servers": [{**OK, "port": "80"}]}).encode(), 'got "80"'),
    ("port float", json.dumps({"servers": [{**OK, "port": 80.5}]}).encode(), "servers[0].port"),
    ("port huge", b'{"servers": [{"address": "127.0.0.1", "port": 1e400}]}', "servers[0].port"),
    ("no port", json.dumps({"servers": [{"address": "127.0.0.1"}]}).encode(), "servers[0].port"),
    ("weight 0", json.dumps({"servers": [{**OK, "weight": 0}]}).encode(), "servers[0].weight"),
    ("weight too big", json.dumps({"servers": [{**OK, "weight": 65536}]}).encode(), "servers[0].weight"),
    ("weight bool", json.dumps({"servers": [{**OK, "weight": True}]}).encode(), "servers[0].weight"),
    ("max_fails -1", json.dumps({"servers": [{**OK, "max_fails": -1}]}).encode(), "servers[0].max_fails"),
    ("max_fails 1001", json.dumps({"servers": [{**OK, "max_fails": 1001}]}).encode(), "max_fails"),
    ("fail_timeout string", json.dumps({"servers": [{**OK, "fail_timeout": "10s"}]}).encode(), "fail_timeout"),
    ("fail_timeout negative", json.dumps({"servers": [{**OK, "fail_timeout": -1}]}).encode(), "fail_timeout"),
    ("fail_timeout > 1 day", json.dumps({"servers": [{**OK, "fail_timeout": 86401}]}).encode(), "fail_timeout"),
    ("max_conns -1", json.dumps({"servers": [{**OK, "max_conns": -1}]}).encode(), "max_conns"),
    ("backup string", json.dumps({"servers": [{**OK, "backup": "yes"}]}).encode(), "servers[0].backup"),
    ("down number", json.dumps({"servers": [{**OK, "down": 1}]}).encode(), "servers[0].down"),
    ("duplicate server", json.dumps({"servers": [OK, OK]}).encode(), "duplicate server 127.0.0.1:8080"),
    (
        "duplicate IPv6 spelled twice",
        json.dumps({"servers": [{"address": "::1", "port": 80}, {"address": "0:0::1", "port": 80}]}).encode(),
        "duplicate server [::1]:80",
    ),
    ("empty servers", json.dumps({"servers": []}).encode(), "allow_empty"),
    ("allow_empty string", json.dumps({"servers": [], "allow_empty": "true"}).encode(), "allow_empty"),
    ("hash_on with $", json.dumps({"servers": [OK], "hash_on": "$remote_addr"}).encode(), "hash_on"),
    ("hash_on uppercase", json.dumps({"servers": [OK], "hash_on": "Remote_Addr"}).encode(), "hash_on"),
    ("hash_on number", json.dumps({"servers": [OK], "hash_on": 5}).encode(), "hash_on"),
    ("oversized body", BIG, "body too large"),
]


@pytest.mark.parametrize(
    ("payload", "reason"), [(p, r) for _, p, r in BAD_PAYLOADS], ids=[i for i, _, _ in BAD_PAYLOADS]
)
def test_bad_payload_is_400_and_changes_nothing(shared_api: ApiNginx, payload: bytes, reason: str) -> None:
    """Every kind of bad payload: 400 JSON naming the problem, state unchanged."""
    before = shared_api.put_ok("payloads", [server("127.0.0.1", 9000)])
    response = shared_api.admin("PUT", "/upstreams/payloads", raw=payload)
    assert response.status_code == 400, response.text
    assert reason in response.json()["error"]
    after = shared_api.get_json("/upstreams/payloads")
    assert after == before


def test_oversized_chunked_body_is_400(shared_api: ApiNginx) -> None:
    """A body without Content-Length is measured after reading: still 400."""

    def chunks() -> Iterator[bytes]:
        yield b'{"servers": [], "pad": "'
        for _ in range(70):
            yield b"x" * 16384
        yield b'"}'

    response = requests.put(
        f"http://127.0.0.1:{shared_api.admin_port}/upstreams/chunked",
        data=chunks(),
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert response.status_code == 400
    assert "body too large" in response.json()["error"]
    assert shared_api.admin("GET", "/upstreams/chunked").status_code == 404


def test_truncated_request_body_changes_nothing(shared_api: ApiNginx) -> None:
    """A client that announces more body than it sends and hangs up writes nothing."""
    shared_api.put_ok("truncated", [S1])
    body = json.dumps({"servers": [S2]}).encode()
    request = (
        b"PUT /upstreams/truncated HTTP/1.1\r\nHost: admin\r\n"
        + f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body) + 50}\r\n\r\n".encode()
        + body
    )
    answer = raw_http(shared_api.admin_port, request, half_close=True)
    assert not answer.startswith(b"HTTP/1.1 200"), answer
    assert shared_api.get_json("/upstreams/truncated")["servers"] == [full("127.0.0.1", 8001)]


# --- status ------------------------------------------------------------------------------


def test_status_reports_versions_peers_and_workers(shared_api: ApiNginx, farm: BackendFarm) -> None:
    """GET /status: generation, per-peer state, and every worker's applied version."""
    shared_api.put_ok("status-web", [server(*farm.address("b1")), server("127.0.0.1", 9, down=True)])
    version = shared_api.get_json("/upstreams/status-web")["version"]

    def converged() -> dict[str, Any] | None:
        status: dict[str, Any] = shared_api.get_json("/status")
        workers = status["workers"]
        pids = {str(p.pid) for p in shared_api.nginx.workers()}
        if set(workers) >= pids and all(workers[p]["applied"].get("status-web") == version for p in pids):
            return status
        return None

    status = wait_until(converged, timeout=10, message="every worker to apply status-web")
    assert status["generation"] == shared_api.get_json("/upstreams")["generation"]
    assert isinstance(status["started_at"], (int, float))
    peers = status["upstreams"]["status-web"]["peers"]
    assert [p["state"] for p in peers] == ["up", "down"]
    assert peers[0] == {
        "address": "127.0.0.1",
        "port": farm.ports["b1"],
        "weight": 1,
        "backup": False,
        "down": False,
        "fails": 0,
        "state": "up",
        "unhealthy_until": None,
    }


def test_concurrent_compare_and_set_loses_no_update(shared_api: ApiNginx) -> None:
    """Writers racing through both workers with If-Match: every version is won exactly once."""
    shared_api.put_ok("race", [server("127.0.0.1", 1)])
    won: list[int] = []

    def writer(index: int) -> None:
        for step in range(5):
            while True:
                current = shared_api.get_json("/upstreams/race")
                port = 1000 * (index + 1) + step
                response = shared_api.admin(
                    "PUT",
                    "/upstreams/race",
                    {"servers": [*current["servers"], server("127.0.0.1", port)]},
                    headers={"If-Match": f'"{current["version"]}"'},
                )
                if response.status_code == 200:
                    won.append(response.json()["version"])
                    break
                assert response.status_code == 409, response.text

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(won) == list(range(2, 32))
    final = shared_api.get_json("/upstreams/race")
    assert final["version"] == 31
    assert len(final["servers"]) == 31  # every writer's addition survived


def test_full_shared_dict_refuses_writes_and_evicts_nothing(fresh_api: ApiNginx) -> None:
    """When the dict is full a PUT answers 500 and every stored upstream stays intact."""
    fresh_api.with_options(dict_size="64k")
    fresh_api.start()
    servers = [server("10.0.0.1", port) for port in range(1, 60)]
    stored: list[str] = []
    for index in range(200):
        response = fresh_api.put(f"big{index}", servers)
        if response.status_code != 200:
            assert response.status_code == 500
            assert "no memory" in response.json()["error"]
            break
        stored.append(f"big{index}")
    else:
        pytest.fail("the 64k dict never filled up")
    assert len(stored) >= 2
    listing = fresh_api.get_json("/upstreams")["upstreams"]
    assert sorted(listing) == sorted(stored)
    for name in stored:
        assert len(fresh_api.get_json(f"/upstreams/{name}")["servers"]) == 59
