"""The /routes admin API validates every table before storing it (PCRE compiles each
regex), and the router sees a new table on the next request, without a reload."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from syncer.testing.nginx import has_lua_module, nginx_binary
from syncer.testing.routing import RoutingLab

pytestmark = pytest.mark.skipif(nginx_binary() is None or not has_lua_module(), reason="needs nginx with Lua")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[RoutingLab]:
    started = RoutingLab("api", tmp_path, "http://127.0.0.1:1").start()  # no Consul needed here
    yield started
    started.stop()


def admin(lab: RoutingLab, method: str, path: str, body: Any = None) -> requests.Response:
    token = lab.token_file.read_text().strip()
    return requests.request(method, f"http://127.0.0.1:{lab.admin_port}{path}", json=body, timeout=5,
                            headers={"Authorization": f"Bearer {token}"})  # fmt: skip


def table(cond: dict[str, Any] | None = None, **action: Any) -> dict[str, Any]:
    default = {"legs": [{"pool": "web", "units": 10000}], "key": "request_id"}
    cond = cond or {"var": "uri", "re": "^/a", "invert": False}
    return {"routes": [{"conds": [cond], "action": {**default, **action}}], "default": default}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (table({"var": "uri", "re": "(unclosed", "invert": False}), "does not compile"),
        (table({"var": "uri", "re": "a{2,1}", "invert": False}), "does not compile"),
        (table({"var": "host", "re": "^a", "invert": False}), "is invalid"),
        (table({"var": "http_x", "re": "^a\n", "invert": False}), "invalid regex"),
        (table(legs=[{"pool": "web", "units": 9000}]), "sum to 9000"),
        (table(legs=[{"pool": "we b", "units": 10000}]), "is invalid"),
        (table(key="args"), "not a variable"),
        (table(rewrite={"re": "^/a(.*)$", "to": "no-slash", "rest": True}), "rewrite is invalid"),
        (table(request_headers=[{"op": "set", "name": "X-A", "value": "a\r\nb"}]), "is invalid"),
        ({"routes": "x"}, "body must be"),
    ],
)
def test_invalid_tables_are_refused(lab: RoutingLab, body: dict[str, Any], reason: str) -> None:
    answer = admin(lab, "PUT", "/routes/web", body)
    assert answer.status_code == 400
    assert reason in answer.json()["error"]
    assert admin(lab, "GET", "/routes/web").status_code == 404


def test_new_table_applies_on_the_next_request(lab: RoutingLab) -> None:
    assert admin(lab, "PUT", "/routes/web", table()).status_code == 200
    first = admin(lab, "GET", "/routes/web").json()
    assert first["version"] == 1
    assert admin(lab, "PUT", "/routes/web", table()).json()["version"] == 1  # same bytes, same version
    assert admin(lab, "PUT", "/routes/web", table(legs=[{"pool": "web.v2", "units": 10000}])).json()["version"] == 2
    assert admin(lab, "GET", "/routes").json()["routes"]["web"]["version"] == 2
    assert admin(lab, "DELETE", "/routes/web").json()["deleted"] is True
    assert admin(lab, "GET", "/routes/web").status_code == 404
