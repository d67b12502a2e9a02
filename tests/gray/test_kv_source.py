"""The KV Source against the dev Consul over HTTP: one blocking ?recurse read, per-key
validation, last good value kept for a refused key, one log line per refused value."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from structlog.testing import capture_logs

from syncer.config import ConsulSettings
from syncer.devconsul.server import DevConsul
from syncer.discovery.client import Answer, ConsulClient
from syncer.routing.events import GrayRulesChanged
from syncer.routing.kv import Target
from syncer.routing.kv_source import KVSource

from .stack import kv_body


@pytest.fixture
def client(dev_consul: DevConsul) -> Iterator[ConsulClient]:
    c = ConsulClient(ConsulSettings(address=dev_consul.address))
    yield c
    c.close()


def put(consul: DevConsul, key: str, value: Any) -> None:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    response = requests.put(f"{consul.url}/v1/kv/{key}", data=raw, timeout=5)
    assert response.status_code == 200, response.text


def read(source: KVSource, index: int = 0, wait: float = 1.0) -> tuple[GrayRulesChanged, int]:
    answer = source.fetch(index, wait)
    _, event = source.read(answer, answer.index or 0)
    return event, answer.index or 0


LIST = {"target": {"service": "web", "subset": "pre"}, "addresses": ["10.0.0.0/8"]}


def test_empty_prefix_reads_as_no_rules(client: ConsulClient) -> None:
    """Consul answers 404 for a prefix with no keys: no rules, and an index to block on."""
    event, index = read(KVSource(client))
    assert event.rules.entries == ()
    assert index >= 1


def test_rules_arrive_and_a_write_wakes_the_blocking_read(dev_consul: DevConsul, client: ConsulClient) -> None:
    source = KVSource(client)
    put(dev_consul, "syncer/gray/web/lists/testers", LIST)
    put(dev_consul, "syncer/unrelated/key", b"not json, not ours")
    event, index = read(source)
    web = event.rules.get("web")
    assert web is not None
    assert [lst.target for lst in web.lists] == [Target("web", "pre")]
    assert event.rejections == ()

    timer = threading.Timer(0.3, put, (dev_consul, "syncer/gray/web/hosts", {"default": {"service": "web"}}))
    timer.start()
    started = time.monotonic()
    event, _ = read(source, index, wait=10)
    timer.join()
    assert 0.2 < time.monotonic() - started < 5  # it blocked, and the write woke it
    web = event.rules.get("web")
    assert web is not None
    assert web.hosts is not None
    assert web.hosts.default == Target("web")


def test_a_bad_value_keeps_the_last_good_one_and_logs_once(dev_consul: DevConsul, client: ConsulClient) -> None:
    source = KVSource(client)
    put(dev_consul, "syncer/gray/web/lists/testers", LIST)
    read(source)
    put(dev_consul, "syncer/gray/web/lists/testers", {**LIST, "addresses": ["10.0.0.0/8", "10.0.0.999"]})
    put(dev_consul, "syncer/gray/web/lists/new", {"target": {"service": "web;"}, "addresses": []})
    with capture_logs() as logs:
        event, _index = read(source)
        again, _ = read(source, 0)  # the same answer again: no second log line
    refused = [entry for entry in logs if entry["event"] == "kv key refused"]
    assert sorted((e["key"], e["field"]) for e in refused) == [
        ("syncer/gray/web/lists/new", "target.service"),
        ("syncer/gray/web/lists/testers", "addresses[1]"),
    ]
    assert any("10.0.0.999" in e["reason"] for e in refused)
    assert {r.key: r.kept_last_good for r in event.rejections} == {
        "syncer/gray/web/lists/testers": True,
        "syncer/gray/web/lists/new": False,
    }
    web = event.rules.get("web")
    assert web is not None
    assert [str(n) for lst in web.lists for n in lst.networks] == ["10.0.0.0/8"]  # last good value
    assert again.rules == event.rules

    requests.delete(f"{dev_consul.url}/v1/kv/syncer/gray/web/lists/testers", timeout=5)
    event, _ = read(source)
    assert event.rules.get("web") is None  # deleted: gone, not "last good"


def test_custom_prefix(dev_consul: DevConsul, client: ConsulClient) -> None:
    put(dev_consul, "syncer/gray/web/lists/testers", LIST)
    put(dev_consul, "edge/gray/api/hosts", {"hosts": {"a.example.com": {"service": "api", "subset": "v2"}}})
    event, _ = read(KVSource(client, prefix="edge/"))
    assert [e.entry for e in event.rules.entries] == ["api"]
    assert event.rules.referenced_services() == {"api"}


def test_an_empty_answer_filtered_by_acls_keeps_the_last_good_rules() -> None:
    """A token that lost key:read sees nothing: that is not proof the rules were deleted."""
    source = KVSource(client=None)  # type: ignore[arg-type]  # read() never asks Consul
    good = Answer(5, kv_body({"gray/web/lists/testers": LIST}), None, None, False)
    _, first = source.read(good, 5)
    with capture_logs() as logs:
        _, hidden = source.read(Answer(6, [], None, None, True), 6)
    assert hidden.rules == first.rules
    assert any(entry["event"].startswith("kv answer filtered by ACLs") for entry in logs)
    _, deleted = source.read(Answer(7, [], None, None, False), 7)  # unfiltered and empty: gone
    assert deleted.rules.entries == ()
