"""Generation, reload, restart and the snapshot loaded on a cold start."""

from __future__ import annotations

import json

from syncer.testing.backends import BackendFarm

from .helpers import NEEDS_NGINX, ApiNginx, server

pytestmark = NEEDS_NGINX


def test_generation_and_state_survive_reload(fresh_api: ApiNginx, farm: BackendFarm) -> None:
    """`nginx -s reload` keeps the generation, the upstreams and their versions; traffic flows."""
    fresh_api.start()
    fresh_api.put_ok("web", [server(*farm.address("b1"))])
    fresh_api.put_ok("web", [server(*farm.address("b2"))])
    before = fresh_api.get_json("/upstreams")

    fresh_api.nginx.reload()

    after = fresh_api.get_json("/upstreams")
    assert after == before
    assert after["upstreams"]["web"]["version"] == 2
    assert fresh_api.request().text == "b2\n"
    # the reload ran init_by_lua again without creating a new generation
    assert fresh_api.nginx.error_log().count("new generation") == 1


def test_new_generation_after_stop_start(fresh_api: ApiNginx, farm: BackendFarm) -> None:
    """A stopped nginx loses its shared memory: a new generation, and no upstreams without a snapshot."""
    fresh_api.start()
    first = fresh_api.get_json("/upstreams")["generation"]
    fresh_api.put_ok("web", [server(*farm.address("b1"))])
    fresh_api.stop()

    fresh_api.start()
    listing = fresh_api.get_json("/upstreams")
    assert listing["generation"] != first
    assert len(listing["generation"]) == 16
    assert listing["upstreams"] == {}
    assert fresh_api.request().status_code == 502


def test_snapshot_is_loaded_on_cold_start(fresh_api: ApiNginx, farm: BackendFarm) -> None:
    """A snapshot in GET /upstreams shape is served right after start, before any PUT."""
    snapshot = {
        "generation": "0123456789abcdef",
        "upstreams": {
            "web": {
                "version": 7,
                "servers": [{"address": "127.0.0.1", "port": farm.ports["b3"], "weight": 2}],
                "hash_on": None,
            },
            "other": {"version": 2, "servers": [], "hash_on": "remote_addr"},
        },
    }
    fresh_api.snapshot_file.write_text(json.dumps(snapshot))
    fresh_api.start()

    listing = fresh_api.get_json("/upstreams")
    assert listing["generation"] != "0123456789abcdef"
    web = fresh_api.get_json("/upstreams/web")
    assert web["version"] == 7
    assert web["servers"][0]["port"] == farm.ports["b3"]
    assert web["servers"][0]["weight"] == 2
    assert fresh_api.get_json("/upstreams/other")["hash_on"] == "remote_addr"
    assert fresh_api.request().text == "b3\n"

    # a later change continues from the snapshot's version
    assert fresh_api.put_ok("web", [server(*farm.address("b4"))])["version"] == 8


def test_snapshot_is_not_reloaded_on_reload(fresh_api: ApiNginx, farm: BackendFarm) -> None:
    """After a reload the live state wins over a snapshot written meanwhile."""
    fresh_api.start()
    fresh_api.put_ok("web", [server(*farm.address("b1"))])
    fresh_api.snapshot_file.write_text(
        json.dumps({"upstreams": {"web": {"servers": [{"address": "127.0.0.1", "port": farm.ports["b2"]}]}}})
    )
    fresh_api.nginx.reload()
    assert fresh_api.request().text == "b1\n"


def test_corrupt_snapshot_is_logged_and_ignored(fresh_api: ApiNginx) -> None:
    """A snapshot that is not JSON does not stop nginx; it starts empty and says why."""
    fresh_api.snapshot_file.write_text('{"upstreams": {"web": {"servers": [')
    fresh_api.start()
    assert fresh_api.get_json("/upstreams")["upstreams"] == {}
    assert "snapshot" in fresh_api.nginx.error_log()
    assert "ignored" in fresh_api.nginx.error_log()


def test_invalid_upstream_in_snapshot_is_skipped(fresh_api: ApiNginx, farm: BackendFarm) -> None:
    """Each snapshot entry is validated like a PUT; a bad one is skipped, the rest load."""
    fresh_api.snapshot_file.write_text(
        json.dumps(
            {
                "upstreams": {
                    "web": {"version": 3, "servers": [{"address": "127.0.0.1", "port": farm.ports["b1"]}]},
                    "bad": {"version": 1, "servers": [{"address": "db.internal", "port": 5432}]},
                    "bad name!": {"servers": []},
                }
            }
        )
    )
    fresh_api.start()
    assert set(fresh_api.get_json("/upstreams")["upstreams"]) == {"web"}
    log = fresh_api.nginx.error_log()
    assert 'upstream "bad" skipped' in log
    assert "servers[0].address" in log
    assert fresh_api.request().text == "b1\n"


def test_missing_snapshot_is_fine(fresh_api: ApiNginx) -> None:
    """No snapshot file: a normal, empty cold start."""
    fresh_api.snapshot_file.unlink(missing_ok=True)
    fresh_api.start()
    assert fresh_api.get_json("/upstreams")["upstreams"] == {}
