"""dev-consul's /v1/config: the shapes, status codes, texts and blocking Consul has."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import requests

from syncer.devconsul.server import DevConsul

SPLIT = {"Kind": "service-splitter", "Name": "web",
         "Splits": [{"Weight": 90, "ServiceSubset": "v1"}, {"Weight": 10, "ServiceSubset": "v2"}]}  # fmt: skip


@pytest.fixture
def url() -> Iterator[str]:
    with DevConsul(port=0) as dev:
        yield dev.url


def put(url: str, body: object, query: str = "") -> requests.Response:
    return requests.put(f"{url}/v1/config{query}", json=body, timeout=5)


def test_empty_list_and_not_found(url: str) -> None:
    listed = requests.get(f"{url}/v1/config/service-router", timeout=5)
    assert (listed.status_code, listed.json()) == (200, [])
    assert int(listed.headers["X-Consul-Index"]) >= 1
    missing = requests.get(f"{url}/v1/config/service-router/web", timeout=5)
    assert missing.status_code == 404
    assert missing.text == 'Config entry not found for "service-router" / "web"'
    assert "X-Consul-Index" in missing.headers


def test_routers_and_splitters_need_an_http_protocol(url: str) -> None:
    refused = put(url, SPLIT)
    assert refused.status_code == 500
    assert refused.text == (
        'discovery chain "web" uses a protocol "tcp" that does not permit advanced routing or splitting behavior'
    )
    assert put(url, {"Kind": "service-defaults", "Name": "web", "Protocol": "http"}).text == "true"
    assert put(url, SPLIT).text == "true"
    downgrade = put(url, {"Kind": "service-defaults", "Name": "web", "Protocol": "tcp"})
    assert downgrade.status_code == 500
    assert "does not permit advanced routing" in downgrade.text


def test_validation_errors_are_consuls(url: str) -> None:
    put(url, {"Kind": "service-defaults", "Name": "web", "Protocol": "http"})
    bad = put(url, {**SPLIT, "Splits": [{"Weight": 90.005, "ServiceSubset": "v1"}, {"Weight": 10}]})
    assert (bad.status_code, bad.text) == (500, "the sum of all split weights must be 100, not 100.010000")
    assert put(url, {"Kind": "nope", "Name": "x"}).status_code == 400
    assert put(url, {"Name": "x"}).status_code == 400


def test_cas_create_update_delete(url: str) -> None:
    resolver = {"Kind": "service-resolver", "Name": "web", "DefaultSubset": "v1", "Subsets": {"v1": {}}}
    assert put(url, resolver, "?cas=0").text == "true"
    assert put(url, resolver, "?cas=0").text == "false"  # create-only
    got = requests.get(f"{url}/v1/config/service-resolver/web", timeout=5).json()
    assert got["Kind"] == "service-resolver"
    assert got["DefaultSubset"] == "v1"
    assert put(url, {**resolver, "DefaultSubset": ""}, f"?cas={got['ModifyIndex'] + 100}").text == "false"
    assert put(url, {**resolver, "DefaultSubset": ""}, f"?cas={got['ModifyIndex']}").text == "true"
    again = requests.get(f"{url}/v1/config/service-resolver/web", timeout=5).json()
    assert again["CreateIndex"] == got["CreateIndex"]
    assert again["ModifyIndex"] > got["ModifyIndex"]
    assert requests.delete(f"{url}/v1/config/service-resolver/web?cas=1", timeout=5).text == "false"
    assert requests.delete(f"{url}/v1/config/service-resolver/web?cas={again['ModifyIndex']}", timeout=5).text == "true"
    assert requests.get(f"{url}/v1/config/service-resolver", timeout=5).json() == []


def test_reads_block_until_an_entry_changes(url: str) -> None:
    first = requests.get(f"{url}/v1/config/service-defaults", timeout=5)
    index = first.headers["X-Consul-Index"]

    def later() -> None:
        time.sleep(0.3)
        put(url, {"Kind": "service-defaults", "Name": "web", "Protocol": "http"})

    threading.Thread(target=later).start()
    started = time.monotonic()
    answer = requests.get(f"{url}/v1/config/service-defaults?index={index}&wait=10s", timeout=15)
    assert 0.2 < time.monotonic() - started < 5
    assert [e["Name"] for e in answer.json()] == ["web"]
    assert int(answer.headers["X-Consul-Index"]) > int(index)
    index = answer.headers["X-Consul-Index"]
    one = requests.get(f"{url}/v1/config/service-defaults/web?index={index}&wait=200ms", timeout=5)
    assert one.status_code == 200  # nothing changed: the wait ran out, same answer
