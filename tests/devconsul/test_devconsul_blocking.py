"""Blocking queries: index rules, per-resource isolation, wait, jitter and cap."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from syncer.devconsul import DevConsul
from syncer.devconsul.blocking import effective_wait, parse_go_duration, with_jitter
from syncer.testing.wait import wait_until


def _index(resp: requests.Response) -> int:
    return int(resp.headers["X-Consul-Index"])


class Watcher(threading.Thread):
    """One blocking GET in the background; records when it answered."""

    def __init__(self, url: str, params: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.url, self.params = url, params
        self.response: requests.Response | None = None
        self.elapsed = 0.0

    def run(self) -> None:
        start = time.monotonic()
        self.response = requests.get(self.url, params=self.params, timeout=30)
        self.elapsed = time.monotonic() - start


def test_index_header_is_never_zero_and_headers_are_set(dev: DevConsul, http: requests.Session) -> None:
    resp = http.get(f"{dev.url}/v1/health/service/missing", timeout=5)
    assert resp.json() == []
    assert _index(resp) >= 1
    assert resp.headers["X-Consul-KnownLeader"] == "true"
    assert resp.headers["X-Consul-LastContact"] == "0"
    assert resp.headers["X-Consul-Effective-Consistency"] == "leader"
    stale = http.get(f"{dev.url}/v1/health/service/missing?stale&cached", timeout=5)
    assert stale.headers["X-Consul-Effective-Consistency"] == "stale"
    assert stale.headers["X-Cache"] == "MISS"
    both = http.get(f"{dev.url}/v1/health/service/missing?stale&consistent", timeout=5)
    assert (both.status_code, both.text) == (400, "Cannot specify ?stale with ?consistent, conflicting semantics.")
    bad = http.get(f"{dev.url}/v1/health/service/x?index=1&wait=5", timeout=5)
    assert (bad.status_code, bad.text) == (400, "Invalid wait time")
    bad = http.get(f"{dev.url}/v1/health/service/x?index=-1", timeout=5)
    assert (bad.status_code, bad.text) == (400, "Invalid index")


def test_blocking_query_returns_on_change(
    register_web: Callable[..., None], dev: DevConsul, http: requests.Session
) -> None:
    register_web()
    index = _index(http.get(f"{dev.url}/v1/health/service/web", timeout=5))
    watcher = Watcher(f"{dev.url}/v1/health/service/web", {"index": str(index), "wait": "5s"})
    watcher.start()
    wait_until(lambda: dev.store.waiting >= 1, message="watcher parked")
    http.put(f"{dev.url}/v1/agent/check/fail/service:web1", timeout=5)
    watcher.join(10)
    assert watcher.response is not None
    assert _index(watcher.response) > index
    assert watcher.elapsed < 4
    assert watcher.response.json()[0]["Checks"][1]["Status"] == "critical"


def test_blocking_query_times_out_with_the_same_index(
    register_web: Callable[..., None], dev: DevConsul, http: requests.Session
) -> None:
    register_web()
    index = _index(http.get(f"{dev.url}/v1/health/service/web", timeout=5))
    start = time.monotonic()
    resp = http.get(f"{dev.url}/v1/health/service/web", params={"index": str(index), "wait": "1s"}, timeout=10)
    elapsed = time.monotonic() - start
    assert _index(resp) == index
    assert 1.0 <= elapsed < 1.0 + 1.0 / 16 + 0.5  # wait plus at most wait/16 of jitter


def test_change_to_another_service_does_not_wake_a_watcher(
    register_web: Callable[..., None], dev: DevConsul, http: requests.Session
) -> None:
    register_web()
    http.put(f"{dev.url}/v1/agent/service/register", json={"Name": "api", "Check": {"TTL": "30s"}}, timeout=5)
    index = _index(http.get(f"{dev.url}/v1/health/service/web", timeout=5))
    watcher = Watcher(f"{dev.url}/v1/health/service/web", {"index": str(index), "wait": "1s"})
    watcher.start()
    wait_until(lambda: dev.store.waiting >= 1, message="watcher parked")
    http.put(f"{dev.url}/v1/agent/check/pass/service:api", timeout=5)
    http.put(f"{dev.url}/v1/agent/service/register", json={"Name": "api", "Port": 1}, timeout=5)
    watcher.join(10)
    assert watcher.response is not None
    assert watcher.elapsed >= 1.0
    assert _index(watcher.response) == index
    # ... while the catalog-wide services list did move.
    assert _index(http.get(f"{dev.url}/v1/catalog/services", timeout=5)) > index


def test_idempotent_reregistration_takes_no_resource_index(
    register_web: Callable[..., None], dev: DevConsul, http: requests.Session
) -> None:
    register_web()
    before = _index(http.get(f"{dev.url}/v1/health/service/web", timeout=5))
    raft_before = dev.store.raft_index
    register_web()  # the very same definition
    assert dev.store.raft_index == raft_before + 1  # one raft apply ...
    assert _index(http.get(f"{dev.url}/v1/health/service/web", timeout=5)) == before  # ... no change


def test_deleted_service_reports_the_extinction_index(
    register_web: Callable[..., None], dev: DevConsul, http: requests.Session
) -> None:
    register_web()
    http.put(f"{dev.url}/v1/agent/service/deregister/web1", timeout=5)
    resp = http.get(f"{dev.url}/v1/health/service/web", timeout=5)
    assert resp.json() == []
    assert _index(resp) == dev.store.table["service_last_extinction"]


def test_catalog_services_and_kv_block_too(
    register_web: Callable[..., None], dev: DevConsul, http: requests.Session
) -> None:
    index = _index(http.get(f"{dev.url}/v1/catalog/services", timeout=5))
    watcher = Watcher(f"{dev.url}/v1/catalog/services", {"index": str(index), "wait": "5s"})
    watcher.start()
    wait_until(lambda: dev.store.waiting >= 1, message="watcher parked")
    register_web()
    watcher.join(10)
    assert watcher.response is not None
    assert "web" in watcher.response.json()
    assert watcher.elapsed < 4


def test_wait_is_capped(http: requests.Session) -> None:
    with DevConsul(port=0, max_wait=0.5) as dev:
        index = _index(http.get(f"{dev.url}/v1/catalog/services", timeout=5))
        start = time.monotonic()
        http.get(f"{dev.url}/v1/catalog/services", params={"index": str(index), "wait": "20m"}, timeout=10)
        assert time.monotonic() - start < 0.5 + 0.5 / 16 + 0.5


def test_wait_rules() -> None:
    assert parse_go_duration("1m30s") == 90
    assert parse_go_duration("250ms") == pytest.approx(0.25)
    assert parse_go_duration("1.5h") == 5400
    for bad in ("5", "abc", "1x", ""):
        with pytest.raises(ValueError, match="time: "):
            parse_go_duration(bad)
    assert effective_wait(None) == 300
    assert effective_wait(0) == 300
    assert effective_wait(-1) == 300
    assert effective_wait(30) == 30
    assert effective_wait(3600) == 600
    for _ in range(100):
        jittered = with_jitter(16.0)
        assert 16.0 <= jittered < 17.0
