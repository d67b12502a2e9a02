"""The Lua balancer under real traffic: nginx with 2 workers in front of real backends."""

from __future__ import annotations

import collections
import os
import signal
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from syncer.testing.backends import BackendFarm
from syncer.testing.ports import free_port
from syncer.testing.wait import wait_until

from .helpers import NEEDS_NGINX, ApiNginx, server

pytestmark = NEEDS_NGINX

SERVICES = (
    "web", "follow", "weights", "downs", "backups", "health", "nolive",
    "ghost", "hashed", "killed", "emptied", "deleted", "rering",
)  # fmt: skip


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiNginx]:
    """One api-mode nginx, 2 workers, routing Host <service> for every service above."""
    nginx = ApiNginx(tmp_path_factory.mktemp("balancer"), workers=2, services=SERVICES).start()
    yield nginx
    nginx.stop()


def closed_port() -> int:
    """A loopback port nobody listens on (connections are refused)."""
    return free_port()


def backend(farm: BackendFarm, name: str, **extra: Any) -> dict[str, Any]:
    return server(*farm.address(name), **extra)


def by_worker(api: ApiNginx, host: str, *, until_each_worker: int = 5, limit: int = 400) -> dict[str, list[str]]:
    """Fresh-connection requests until every worker has answered a few; bodies per worker pid."""
    pids = {str(p.pid) for p in api.nginx.workers()}
    seen: dict[str, list[str]] = collections.defaultdict(list)
    for _ in range(limit):
        response = api.request(host)
        seen[response.headers.get("X-Syncer-Worker", "?")].append(
            response.text.strip() if response.status_code == 200 else str(response.status_code)
        )
        if all(len(seen[p]) >= until_each_worker for p in pids):
            return dict(seen)
    raise AssertionError(f"not every worker answered: {dict(seen)} (workers {pids})")


def test_traffic_follows_a_put_on_the_next_request_in_every_worker(api: ApiNginx, farm: BackendFarm) -> None:
    """After a PUT answers, every request in every worker uses the new set: no propagation delay."""
    for target in ("b1", "b2", "b3", "b1"):
        api.put_ok("follow", [backend(farm, target)])
        answers = by_worker(api, "follow")
        assert len(answers) == 2
        for pid, bodies in answers.items():
            assert set(bodies) == {target}, (pid, bodies)


def test_status_shows_each_worker_applied_the_version(api: ApiNginx, farm: BackendFarm) -> None:
    """/status reports the version every worker serves, without traffic (timer refresh)."""
    version = api.put_ok("web", [backend(farm, "b1"), backend(farm, "b2")])["version"]

    def applied() -> bool:
        workers = api.get_json("/status")["workers"]
        pids = {str(p.pid) for p in api.nginx.workers()}
        return pids <= set(workers) and all(workers[p]["applied"].get("web") == version for p in pids)

    wait_until(applied, timeout=5, message="both workers to report the new version")


def test_weights_are_followed(api: ApiNginx, farm: BackendFarm) -> None:
    """Weights 1:3 over 2 workers: smooth WRR keeps each worker within 1 pick of the ratio."""
    api.put_ok("weights", [backend(farm, "b1", weight=1), backend(farm, "b2", weight=3)])
    session = requests.Session()
    counts = collections.Counter(
        session.get(f"http://127.0.0.1:{api.port}/", headers={"Host": "weights"}, timeout=5).text.strip()
        for _ in range(200)
    )
    assert 146 <= counts["b2"] <= 154, counts

    api.put_ok("weights", [backend(farm, "b1", weight=3), backend(farm, "b2", weight=1)])
    counts = collections.Counter(
        session.get(f"http://127.0.0.1:{api.port}/", headers={"Host": "weights"}, timeout=5).text.strip()
        for _ in range(200)
    )
    assert 146 <= counts["b1"] <= 154, counts


def test_down_servers_get_no_traffic(api: ApiNginx, farm: BackendFarm) -> None:
    """`down: true` takes a server out of rotation entirely."""
    api.put_ok("downs", [backend(farm, "b1", down=True), backend(farm, "b2"), backend(farm, "b3", down=True)])
    answers = by_worker(api, "downs")
    assert {body for bodies in answers.values() for body in bodies} == {"b2"}


def test_backup_only_when_every_primary_is_unavailable(api: ApiNginx, farm: BackendFarm) -> None:
    """A backup gets nothing while a primary lives, and everything when primaries are unreachable."""
    api.put_ok("backups", [backend(farm, "b1"), backend(farm, "b2"), backend(farm, "b3", backup=True)])
    answers = by_worker(api, "backups")
    assert {body for bodies in answers.values() for body in bodies} == {"b1", "b2"}

    dead = [server("127.0.0.1", closed_port()), server("127.0.0.1", closed_port())]
    api.put_ok("backups", [*dead, backend(farm, "b3", backup=True)])
    answers = by_worker(api, "backups")
    assert {body for bodies in answers.values() for body in bodies} == {"b3"}

    api.put_ok("backups", [dead[0], {**dead[1], "down": True}, backend(farm, "b4", backup=True)])
    answers = by_worker(api, "backups")
    assert {body for bodies in answers.values() for body in bodies} == {"b4"}


def test_passive_health_marks_a_dead_server_and_retries(api: ApiNginx, farm: BackendFarm) -> None:
    """A refused server fails max_fails times (shared by workers), is marked unhealthy,
    and every request still succeeds on the live server meanwhile."""
    dead_port = closed_port()
    api.put_ok(
        "health",
        [server("127.0.0.1", dead_port, max_fails=2, fail_timeout=30), backend(farm, "b1")],
    )
    for _ in range(6):
        response = api.request("health")
        assert response.status_code == 200
        assert response.text == "b1\n"

    peers = api.get_json("/status")["upstreams"]["health"]["peers"]
    assert peers[0]["state"] == "unhealthy"
    assert peers[0]["unhealthy_until"] is not None
    assert peers[1]["state"] == "up"

    # marked in the dict: no worker tries the dead server any more
    answers = []
    for _ in range(20):
        response = api.request("health")
        answers.append(response.headers["X-Syncer-Upstream-Addr"])
    assert set(answers) == {f"127.0.0.1:{farm.ports['b1']}"}
    assert "marked unhealthy" in api.nginx.error_log()


def test_final_attempt_failure_is_counted(api: ApiNginx, farm: BackendFarm) -> None:
    """With no retry left, the failed final attempt still counts (through the error_page
    location, without any log phase)."""
    dead_port = closed_port()
    # a single live alternative is down, so each request has exactly one attempt
    api.put_ok(
        "health",
        [server("127.0.0.1", dead_port, max_fails=1, fail_timeout=30), backend(farm, "b2", down=True)],
    )
    assert api.request("health").status_code == 502
    peers = api.get_json("/status")["upstreams"]["health"]["peers"]
    # one server in rotation: like nginx, a lone server is never taken out
    assert peers[0]["state"] == "up"

    api.put_ok(
        "health",
        [
            server("127.0.0.1", dead_port, max_fails=1, fail_timeout=30),
            server("127.0.0.1", closed_port(), max_fails=1, fail_timeout=30),
        ],
    )
    assert api.request("health").status_code == 502
    states = [p["state"] for p in api.get_json("/status")["upstreams"]["health"]["peers"]]
    assert states == ["unhealthy", "unhealthy"]


def test_unknown_upstream_is_502(api: ApiNginx) -> None:
    """A Host routed to an upstream nobody PUT: 502 and an error log line naming it."""
    response = api.request("ghost")
    assert response.status_code == 502
    assert 'upstream "ghost": unknown upstream' in api.nginx.error_log()


def test_deleted_upstream_is_502(api: ApiNginx, farm: BackendFarm) -> None:
    """After DELETE the next request in every worker gets 502."""
    api.put_ok("deleted", [backend(farm, "b1")])
    assert api.request("deleted").status_code == 200
    assert api.admin("DELETE", "/upstreams/deleted").status_code == 200
    answers = by_worker(api, "deleted", until_each_worker=3)
    assert {body for bodies in answers.values() for body in bodies} == {"502"}


def test_no_live_peer_is_502(api: ApiNginx, farm: BackendFarm) -> None:
    """All servers down (or an allowed empty set): 502 with the reason in the error log."""
    api.put_ok("nolive", [backend(farm, "b1", down=True), backend(farm, "b2", down=True)])
    assert api.request("nolive").status_code == 502
    assert 'upstream "nolive": no live peer' in api.nginx.error_log()

    api.put_ok("emptied", [], allow_empty=True)
    assert api.request("emptied").status_code == 502


def test_unreachable_servers_give_502_after_trying_each_once(api: ApiNginx) -> None:
    """Every server refusing: each is tried once (no repeat), then 502."""
    ports = [closed_port(), closed_port(), closed_port()]
    api.put_ok("nolive", [server("127.0.0.1", p, max_fails=0) for p in ports])
    response = api.request("nolive")
    assert response.status_code == 502
    tried = [a.strip() for a in response.headers["X-Syncer-Upstream-Addr"].split(",")]
    assert sorted(tried) == sorted(f"127.0.0.1:{p}" for p in ports)


def test_a_killed_worker_is_replaced_and_serves_the_current_set(api: ApiNginx, farm: BackendFarm) -> None:
    """SIGKILL one worker: its replacement serves the current set on its first request."""
    api.put_ok("killed", [backend(farm, "b1")])
    api.put_ok("killed", [backend(farm, "b4")])
    before = {p.pid for p in api.nginx.workers()}
    victim = min(before)
    os.kill(victim, signal.SIGKILL)

    def replaced() -> set[int] | None:
        now = {p.pid for p in api.nginx.workers()}
        return now if victim not in now and len(now) == 2 else None

    workers = wait_until(replaced, timeout=10, message="the master to replace the killed worker")
    (replacement,) = workers - before
    answers = by_worker(api, "killed")
    assert set(answers[str(replacement)]) == {"b4"}
    assert {body for bodies in answers.values() for body in bodies} == {"b4"}


def test_consistent_hashing_keeps_keys_and_moves_few(api: ApiNginx, farm: BackendFarm) -> None:
    """hash_on: a key always lands on the same server (in every worker); adding a 5th server
    moves only about 1/5 of the keys, all of them to the new server."""
    names = ["b1", "b2", "b3", "b4"]
    api.put_ok("hashed", [backend(farm, n) for n in names], hash_on="arg_key")
    session = requests.Session()

    def placement() -> dict[str, str]:
        result = {}
        for i in range(300):
            response = session.get(f"http://127.0.0.1:{api.port}/?key=user-{i}", headers={"Host": "hashed"}, timeout=5)
            result[f"user-{i}"] = response.text.strip()
        return result

    first = placement()
    assert placement() == first
    spread = collections.Counter(first.values())
    assert set(spread) == set(names)
    assert min(spread.values()) >= 30, spread  # roughly even: 75 expected each

    # the other worker (fresh connections spread over both) agrees
    for i in range(0, 300, 15):
        response = requests.get(
            f"http://127.0.0.1:{api.port}/?key=user-{i}",
            headers={"Host": "hashed", "Connection": "close"},
            timeout=5,
        )
        assert response.text.strip() == first[f"user-{i}"]

    api.put_ok("hashed", [backend(farm, n) for n in [*names, "b5"]], hash_on="arg_key")
    second = placement()
    moved = {key for key in first if first[key] != second[key]}
    assert {second[key] for key in moved} == {"b5"}
    assert 0.08 <= len(moved) / len(first) <= 0.35, len(moved)


def test_all_unhealthy_clears_marks_like_nginx(api: ApiNginx) -> None:
    """When every server is marked unhealthy the request gets 502 and the marks are cleared,
    so the next request probes the servers again (nginx's behaviour for failed peers)."""
    ports = [closed_port(), closed_port()]
    api.put_ok("nolive", [server("127.0.0.1", p, max_fails=1, fail_timeout=60) for p in ports])
    assert api.request("nolive").status_code == 502
    states = [p["state"] for p in api.get_json("/status")["upstreams"]["nolive"]["peers"]]
    assert states == ["unhealthy", "unhealthy"]

    assert api.request("nolive").status_code == 502
    states = [p["state"] for p in api.get_json("/status")["upstreams"]["nolive"]["peers"]]
    assert states == ["up", "up"]
    assert "unhealthy marks cleared" in api.nginx.error_log()


def test_max_conns_limits_in_flight_requests(fresh_api: ApiNginx, farm: BackendFarm) -> None:
    """A server at max_conns gets no new request until one in flight ends (needs the
    log phase, which releases the slots)."""
    fresh_api.with_options(worker_processes=1, log_phase=True)
    fresh_api.start()
    with socket.socket() as hanging:
        # accepts connections (kernel backlog) but never answers: requests stay in flight
        hanging.bind(("127.0.0.1", 0))
        hanging.listen(8)
        slow_port = hanging.getsockname()[1]
        fresh_api.put_ok("web", [server("127.0.0.1", slow_port, max_conns=1), backend(farm, "b1")])

        stuck = socket.create_connection(("127.0.0.1", fresh_api.port))
        stuck.sendall(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")  # smooth WRR sends the first request to the slow server
        wait_until(lambda: _connected(slow_port), timeout=5, message="nginx to connect to the slow server")
        answers = [fresh_api.request("web").text for _ in range(6)]
        assert answers == ["b1\n"] * 6
    # the slow server is gone: the stuck request is retried on b1 and its slot freed
    stuck.settimeout(10)
    assert stuck.recv(65536).startswith(b"HTTP/1.1 200")
    stuck.close()


def _connected(port: int) -> bool:
    """Is there an established TCP connection to 127.0.0.1:port (in the kernel's table)?"""
    target = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as table:
        return any(line.split()[2] == target and line.split()[3] == "01" for line in list(table)[1:])


def test_a_removed_server_loses_only_its_keys_from_the_very_next_request(api: ApiNginx, farm: BackendFarm) -> None:
    """After a change the ring is rebuilt by a timer, off the request path; the requests
    before it uses the previous ring mapped onto the new set: a removed server gets
    nothing from the very first request, keys of the others stay put."""
    names = ["b1", "b2", "b3", "b4"]
    api.put_ok("rering", [backend(farm, n) for n in names], hash_on="arg_key")
    session = requests.Session()  # one keep-alive connection: one worker, the same one throughout

    def placement() -> dict[str, str]:
        return {
            f"k{i}": session.get(
                f"http://127.0.0.1:{api.port}/?key=k{i}", headers={"Host": "rering"}, timeout=5
            ).text.strip()
            for i in range(200)
        }

    before = placement()
    api.put_ok("rering", [backend(farm, n) for n in ["b1", "b3", "b4"]], hash_on="arg_key")
    after = placement()
    assert "b2" not in after.values()
    assert all(after[key] == server for key, server in before.items() if server != "b2")
    assert placement() == after  # the rebuilt ring places every key the same way
