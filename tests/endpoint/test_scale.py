"""The endpoint at scale: the O(1) summary the reconcile probe reads, batched writes with
a result per upstream, the name index, and syncer's api sink driving them (per-upstream
failures isolated, the default shared dict holding 2,000 upstreams x 10 servers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from syncer import limits
from syncer.config import ApiSettings
from syncer.effects.admin_http import digest
from syncer.model import Desired, Server, make_upstream
from syncer.nginx_example import ExampleOptions
from syncer.sinks.api import ApiSink

from .helpers import NEEDS_NGINX, TOKEN, ApiNginx, server

pytestmark = NEEDS_NGINX

LIMITS = limits.load()


def servers(count: int, base: int = 0) -> list[dict[str, Any]]:
    return [server(f"10.{(base >> 8) & 255}.{base & 255}.{i // 250 + 1}", 1000 + i % 250) for i in range(count)]


def batch(api: ApiNginx, entries: dict[str, Any]) -> dict[str, Any]:
    response = api.admin("PATCH", "/upstreams", {"upstreams": entries})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def sink_for(api: ApiNginx) -> ApiSink:
    return ApiSink(ApiSettings(endpoint=f"http://127.0.0.1:{api.admin_port}", token=TOKEN, timeout=30))


def desired(upstreams: dict[str, int]) -> Desired:
    return Desired(
        {
            name: make_upstream(name, [Server(f"10.1.{i // 250}.{i % 250 + 1}", 8080) for i in range(count)])
            for name, count in upstreams.items()
        }
    )


# --- the summary -------------------------------------------------------------------------


def test_summary_is_constant_size_and_matches_syncers_digest(fresh_api: ApiNginx) -> None:
    """GET /summary answers the same few hundred bytes for 1 or 300 upstreams, and its
    count and digest are what syncer computes from the versions it holds."""
    fresh_api.start()
    fresh_api.put_ok("one", servers(1))
    small = fresh_api.admin("GET", "/summary")
    batch(fresh_api, {f"svc{i:03d}": {"servers": servers(3, i)} for i in range(200)})
    batch(fresh_api, {f"svc{i:03d}": {"servers": servers(3, i)} for i in range(200, 300)})
    big = fresh_api.admin("GET", "/summary")
    assert len(big.content) < 400
    assert abs(len(big.content) - len(small.content)) < 16  # a few more digits, nothing per upstream

    body = big.json()
    listing = fresh_api.get_json("/upstreams")
    versions = {name: u["version"] for name, u in listing["upstreams"].items()}
    assert body["upstreams"] == len(versions) == 301
    assert body["digest"] == digest(versions)
    assert body["generation"] == listing["generation"]
    assert body["limits"] == {
        "max_body": LIMITS.max_body_default,
        "max_batch": LIMITS.max_batch,
        "max_servers": LIMITS.max_servers,
    }
    assert body["dict"]["capacity"] > 0
    assert 0 <= body["dict"]["free"] <= body["dict"]["capacity"]

    # a write by anyone moves the digest; deleting it again restores the count
    fresh_api.put_ok("svc007", servers(2))
    moved = fresh_api.get_json("/summary")
    assert moved["digest"] != body["digest"]
    assert moved["upstreams"] == 301
    assert fresh_api.admin("DELETE", "/upstreams/one").status_code == 200
    after = fresh_api.get_json("/summary")
    assert after["upstreams"] == 300
    versions = {name: u["version"] for name, u in fresh_api.get_json("/upstreams")["upstreams"].items()}
    assert after["digest"] == digest(versions)


def test_the_name_index_survives_creates_and_deletes(fresh_api: ApiNginx) -> None:
    """Names live in small buckets: after creating 200 and deleting every third, the
    listing, the summary and /status agree on exactly what is left."""
    fresh_api.start()
    names = [f"n{i:03d}" for i in range(LIMITS.max_batch)]
    batch(fresh_api, {name: {"servers": servers(1)} for name in names})
    for name in names[::3]:
        assert fresh_api.admin("DELETE", f"/upstreams/{name}").status_code == 200
    left = sorted(set(names) - set(names[::3]))
    assert sorted(fresh_api.get_json("/upstreams")["upstreams"]) == left
    assert fresh_api.get_json("/summary")["upstreams"] == len(left)
    assert sorted(fresh_api.get_json("/status")["upstreams"]) == left


# --- batches -----------------------------------------------------------------------------


def test_a_batch_answers_per_upstream_and_one_refusal_stops_nothing(shared_api: ApiNginx) -> None:
    """PATCH /upstreams: a refused entry (past max_servers, bad field, bad name, stale
    if_match) gets its own error; every other entry is stored."""
    shared_api.put_ok("b-cas", servers(1))
    entries = {
        "b-aaa": {"servers": servers(2)},
        "b-big": {"servers": servers(LIMITS.max_servers + 1)},
        "b-bad": {"servers": [{"address": "10.0.0.1", "port": 0}]},
        "b-cas": {"servers": servers(3), "if_match": 99},
        "b zzz": {"servers": servers(1)},
        "b-zzz": {"servers": servers(4)},
    }
    results = batch(shared_api, entries)["results"]
    assert results["b-aaa"]["status"] == 200
    assert results["b-zzz"]["status"] == 200
    assert results["b-big"] == {
        "status": 400,
        "error": f"servers: at most {LIMITS.max_servers} entries, got {LIMITS.max_servers + 1}",
    }
    assert results["b-bad"]["status"] == 400
    assert "port" in results["b-bad"]["error"]
    assert results["b zzz"]["status"] == 400
    assert "invalid upstream name" in results["b zzz"]["error"]
    assert results["b-cas"] == {"status": 409, "error": "version mismatch", "version": 1}
    assert len(shared_api.get_json("/upstreams/b-zzz")["servers"]) == 4
    assert shared_api.admin("GET", "/upstreams/b-big").status_code == 404
    assert len(shared_api.get_json("/upstreams/b-cas")["servers"]) == 1

    again = batch(shared_api, {"b-zzz": {"servers": servers(4), "if_match": results["b-zzz"]["version"]}})
    assert again["results"]["b-zzz"] == {"status": 200, "version": results["b-zzz"]["version"], "changed": False}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"upstreams": [{"servers": []}]}, "upstreams: must be an object"),
        ({"upstreams": "web"}, "upstreams: must be an object"),
        ([1], "body must be a JSON object"),
        ({"upstreams": {}, "extra": 1}, 'unknown field "extra"'),
        ({"upstreams": {f"u{i}": {"servers": servers(1)} for i in range(LIMITS.max_batch + 1)}}, "at most"),
    ],
)
def test_a_malformed_batch_is_400(shared_api: ApiNginx, body: Any, reason: str) -> None:
    response = shared_api.admin("PATCH", "/upstreams", body)
    assert response.status_code == 400
    assert reason in response.json()["error"]


# --- the api sink at scale -----------------------------------------------------------------


def test_one_refused_upstream_does_not_stop_the_others(fresh_api: ApiNginx) -> None:
    """An upstream past the server limit sorts first; every other one is still pushed,
    and the refusal is reported per upstream (rejected: it waits for a new change)."""
    fresh_api.start()
    sink = sink_for(fresh_api)
    try:
        want = desired({"a-huge": LIMITS.max_servers + 1, "b-web": 3, "c-api": 2})
        result = sink.apply(want)
        assert result.action == "rejected", result
        assert [name for name, _ in result.failed_upstreams] == ["a-huge"]
        assert "at most 4096 entries" in result.failed_upstreams[0][1]
        assert sorted(c.name for c in result.changes) == ["b-web", "c-api"]
        assert ("push", "refused") in result.steps
        held = fresh_api.get_json("/upstreams")["upstreams"]
        assert sorted(held) == ["b-web", "c-api"]

        # a fixed Consul answer goes through on the next apply; nothing else is re-sent
        fixed = desired({"a-huge": 5, "b-web": 3, "c-api": 2})
        again = sink.apply(fixed)
        assert again.action == "pushed"
        assert [c.name for c in again.changes] == ["a-huge"]
        assert not sink.needs_reconcile()
    finally:
        sink.close()


def test_a_full_dict_names_its_size_and_the_rest_still_goes(fresh_api: ApiNginx) -> None:
    """A dict too small for everything: the upstreams that fit are pushed, each one that
    does not is reported as a retryable failure whose reason names the dict and its size."""
    fresh_api.with_options(dict_size="128k")
    fresh_api.start()
    sink = sink_for(fresh_api)
    try:
        result = sink.apply(desired({f"u{i:03d}": 40 for i in range(60)}))
        assert result.action == "failed", result
        assert result.changes
        assert result.failed_upstreams
        reason = result.failed_upstreams[0][1]
        assert 'lua_shared_dict "syncer_upstreams" is full (size 131072 bytes' in reason, reason
        stored = fresh_api.get_json("/upstreams")["upstreams"]
        assert len(stored) == len(result.changes)
        assert not sink.needs_reconcile()  # what it holds is exactly what was acknowledged
    finally:
        sink.close()


def test_the_default_dict_holds_2000_upstreams_of_10_servers(tmp_path: Path) -> None:
    """nginx-example's default lua_shared_dict: 2,000 upstreams x 10 servers pushed in a
    few batches, with at least a third of the dict still free."""
    api = ApiNginx(tmp_path / "nginx", workers=1)
    assert api.options.dict_size == ExampleOptions().dict_size
    api.start()
    sink = sink_for(api)
    try:
        result = sink.apply(desired({f"svc-{i:04d}": 10 for i in range(2000)}))
        assert result.action == "pushed", result.detail
        summary = api.get_json("/summary")
        assert summary["upstreams"] == 2000
        assert summary["dict"]["free"] > summary["dict"]["capacity"] / 3, summary["dict"]
    finally:
        sink.close()
        api.stop()
