"""ACL mode: default deny, management tokens, anonymous filtering, Consul's 403 bodies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from syncer.devconsul import DevConsul
from syncer.devconsul.acl import read_tokens_file

TOKEN = "3f1a5e5c-8a8e-4a43-bb5c-2a52c5d1a001"


@pytest.fixture
def secured() -> Iterator[DevConsul]:
    with DevConsul(port=0, acl_tokens=[TOKEN]) as server:
        yield server


def _register(dev: DevConsul, headers: dict[str, str]) -> requests.Response:
    body = {"Name": "web", "Port": 80, "Check": {"TTL": "30s", "Status": "passing"}}
    return requests.put(f"{dev.url}/v1/agent/service/register", json=body, headers=headers, timeout=5)


def test_anonymous_write_is_denied_with_consuls_wording(secured: DevConsul) -> None:
    resp = _register(secured, {})
    assert resp.status_code == 403
    assert resp.text == (
        "Permission denied: anonymous token lacks permission 'service:write' on \"web\". "
        "The anonymous token is used implicitly when a request does not specify a token."
    )
    assert resp.headers["X-Consul-Default-ACL-Policy"] == "deny"


def test_unknown_token_is_acl_not_found(secured: DevConsul) -> None:
    resp = _register(secured, {"X-Consul-Token": "not-a-token"})
    assert (resp.status_code, resp.text) == (403, "ACL not found")
    read = requests.get(f"{secured.url}/v1/health/service/web", headers={"X-Consul-Token": "x"}, timeout=5)
    assert (read.status_code, read.text) == (403, "ACL not found")


@pytest.mark.parametrize(
    ("headers", "params"),
    [({"X-Consul-Token": TOKEN}, {}), ({"Authorization": f"Bearer {TOKEN}"}, {}), ({}, {"token": TOKEN})],
)
def test_token_can_come_from_header_bearer_or_query(
    secured: DevConsul, headers: dict[str, str], params: dict[str, str]
) -> None:
    body = {"Name": "web", "Port": 80}
    url = f"{secured.url}/v1/agent/service/register"
    assert requests.put(url, json=body, headers=headers, params=params, timeout=5).status_code == 200
    resp = requests.get(f"{secured.url}/v1/catalog/service/web", headers=headers, params=params, timeout=5)
    assert [e["ServiceID"] for e in resp.json()] == ["web"]


def test_anonymous_reads_are_filtered_not_refused(secured: DevConsul) -> None:
    assert _register(secured, {"X-Consul-Token": TOKEN}).status_code == 200
    health = requests.get(f"{secured.url}/v1/health/service/web", timeout=5)
    assert (health.status_code, health.json()) == (200, [])
    assert int(health.headers["X-Consul-Index"]) >= 1
    # Consul masks X-Consul-Results-Filtered-By-ACLs for unauthenticated requests (maskResultsFilteredByACLs).
    assert "X-Consul-Results-Filtered-By-ACLs" not in health.headers
    assert requests.get(f"{secured.url}/v1/catalog/services", timeout=5).json() == {}
    assert requests.get(f"{secured.url}/v1/agent/services", timeout=5).json() == {}
    assert requests.get(f"{secured.url}/v1/catalog/nodes", timeout=5).json() == []
    # Status endpoints take no token at all.
    assert requests.get(f"{secured.url}/v1/status/leader", timeout=5).status_code == 200


def test_anonymous_kv_read_of_one_key_is_refused(secured: DevConsul) -> None:
    put = requests.put(f"{secured.url}/v1/kv/cfg", data=b"1", headers={"X-Consul-Token": TOKEN}, timeout=5)
    assert put.json() is True
    resp = requests.get(f"{secured.url}/v1/kv/cfg", timeout=5)
    assert resp.status_code == 403
    assert resp.text.startswith("Permission denied: anonymous token lacks permission 'key:read' on \"cfg\"")
    assert requests.get(f"{secured.url}/v1/kv/cfg?recurse", timeout=5).status_code == 404  # filtered
    ttl = requests.put(f"{secured.url}/v1/agent/check/pass/nope", timeout=5)
    assert ttl.status_code == 404  # an unknown check is a 404 before ACLs are consulted


def test_token_file_format(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"# management tokens\n{TOKEN}\n\n  other-token  \n", encoding="utf-8")
    assert read_tokens_file(path) == [TOKEN, "other-token"]
