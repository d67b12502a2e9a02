"""The admin API inside nginx always wants its bearer token: every method on every path,
including bodies nginx itself would refuse as too large, answers 401 without it, and
nothing changes."""

from __future__ import annotations

import pytest
import requests

from tests.stack import NEEDS_LUA, Stack

pytestmark = [NEEDS_LUA, pytest.mark.parametrize("stack", ["api"], indirect=True)]

ROUTES = [
    ("GET", "/upstreams"),
    ("GET", "/upstreams/web"),
    ("PUT", "/upstreams/web"),
    ("DELETE", "/upstreams/web"),
    ("GET", "/status"),
    ("POST", "/upstreams"),
    ("GET", "/"),
    ("GET", "/no/such/path"),
]
BODY = b'{"servers": [{"address": "127.0.0.1", "port": 9}]}'


def credentials(stack: Stack) -> list[dict[str, str]]:
    token = stack.admin_token
    return [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {token[:-1]}"},
        {"Authorization": f"Bearer {token}x"},
        {"Authorization": f"Basic {token}"},
        {"Authorization": token},
        {"X-Consul-Token": token},
        {"Authorization": f"Bearer {token} {token}"},
    ]


def test_every_route_without_the_token_is_401_and_changes_nothing(stack: Stack) -> None:
    """11 kinds of missing or wrong credentials x 8 routes: all 401, state unchanged."""
    assert stack.admin("PUT", "/upstreams/web", data=BODY).status_code == 200
    before = stack.admin("GET", "/upstreams").json()
    for headers in credentials(stack):
        for method, path in ROUTES:
            response = requests.request(
                method, stack.admin_url + path, headers=headers, data=BODY if method == "PUT" else None, timeout=5
            )
            assert response.status_code == 401, (method, path, headers, response.text)
    assert stack.admin("GET", "/upstreams").json() == before


def test_an_oversized_body_without_the_token_is_401_not_400(stack: Stack) -> None:
    """nginx refuses the body (413 → the Lua handler); the handler still checks the token first."""
    big = b"x" * (2 * 1024 * 1024)
    response = requests.put(stack.admin_url + "/upstreams/web", data=big, timeout=10)
    assert response.status_code == 401
    with_token = stack.admin("PUT", "/upstreams/web", data=big)
    assert with_token.status_code == 400
    assert "too large" in with_token.json()["error"]
