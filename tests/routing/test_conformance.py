"""Both modes make the same decision for the same request: the conformance table against
real nginx (reload: native maps and split_clients; api: the Lua router), with entries
written to the dev Consul over HTTP and read back the way the agent reads them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from syncer.devconsul.server import DevConsul
from syncer.testing.consul import ConsulWriter
from syncer.testing.routing import EchoBackends, RoutingLab
from tests.routing.conformance import GRAY_KV, GRAY_ROWS, INSTANCES, POOL_BACKEND, ROWS, SCENARIOS
from tests.stack import BOTH_MODES

ORDER = {"service-router": 0, "service-splitter": 1, "service-resolver": 2, "service-defaults": 3}


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EchoBackends]:
    farm = EchoBackends(tmp_path_factory.mktemp("echo"), list(INSTANCES)).start()
    yield farm
    farm.stop()


@pytest.fixture
def lab(request: pytest.FixtureRequest, tmp_path: Path, echo: EchoBackends) -> Iterator[RoutingLab]:
    with DevConsul(port=0) as dev:
        writer = ConsulWriter(dev.url)
        for instance, (service, meta, tags) in INSTANCES.items():
            writer.register(service, instance, echo.ports[instance], meta=meta, tags=tags)
        started = RoutingLab(request.param, tmp_path / request.param, dev.url, services=("web",)).start()
        try:
            yield started
        finally:
            started.stop()
            writer.close()


def apply(lab: RoutingLab, entries: list[dict[str, Any]]) -> None:
    """Replace every config entry in Consul with ``entries``, then sync."""
    for kind in sorted(ORDER, key=ORDER.__getitem__):
        for entry in requests.get(f"{lab.consul_url}/v1/config/{kind}", timeout=5).json():
            requests.delete(f"{lab.consul_url}/v1/config/{kind}/{entry['Name']}", timeout=5).raise_for_status()
    for entry in sorted(entries, key=lambda e: -ORDER[e["Kind"]]):
        answer = requests.put(f"{lab.consul_url}/v1/config", json=entry, timeout=5)
        assert answer.text == "true", answer.text
    lab.sync()


@pytest.mark.parametrize("lab", BOTH_MODES, indirect=True)
def test_conformance_table(lab: RoutingLab) -> None:
    failures = []
    for scenario in SCENARIOS:
        apply(lab, SCENARIOS[scenario])
        for name, method, path, headers, pool in ROWS:
            if name != scenario:
                continue
            got = lab.request(path, method, headers).backend
            if got != POOL_BACKEND[pool]:
                failures.append(f"{scenario}: {method} {path} {headers} -> {got}, want {pool}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("lab", BOTH_MODES, indirect=True)
def test_rewrite_headers_and_random_split(lab: RoutingLab) -> None:
    apply(lab, [SCENARIOS["routes"][0], SCENARIOS["routes"][1], {
        "Kind": "service-router", "Name": "web", "Routes": [{
            "Match": {"HTTP": {"PathPrefix": "/old/"}},
            "Destination": {"ServiceSubset": "v2", "PrefixRewrite": "/new/",
                            "RequestHeaders": {"Set": {"X-Routed": "yes"}},
                            "ResponseHeaders": {"Set": {"X-Served-By": "steered"}, "Add": {"X-Extra": "1"}}}}]},
        {"Kind": "service-splitter", "Name": "web",
         "Splits": [{"Weight": 80, "ServiceSubset": "v1"}, {"Weight": 20, "ServiceSubset": "v2"}]}])  # fmt: skip
    reply = lab.request("/old/a/b?x=1")
    assert (reply.backend, reply.headers["X-Uri"], reply.headers["X-Got-Routed"]) == ("v2a", "/new/a/b?x=1", "yes")
    assert (reply.headers["X-Served-By"], reply.headers["X-Extra"]) == ("steered", "1")
    other = lab.request("/other")
    assert other.headers["X-Uri"] == "/other"
    assert other.headers.get("X-Extra") is None
    assert other.headers["X-Served-By"] == other.backend  # the upstream's own header passes through
    counts = Counter(lab.request("/x").backend for _ in range(400))
    assert 40 <= counts["v2a"] <= 130, counts  # 20 % of 400, binomial sd 8


@pytest.mark.parametrize("lab", BOTH_MODES, indirect=True)
def test_bad_entry_keeps_the_last_good_routing(lab: RoutingLab) -> None:
    apply(lab, SCENARIOS["routes"])
    bad = {"Kind": "service-router", "Name": "web", "Routes": [
        {"Match": {"HTTP": {"PathRegex": "(a+)+$"}}, "Destination": {"Service": "api"}}]}  # fmt: skip
    assert requests.put(f"{lab.consul_url}/v1/config", json=bad, timeout=5).text == "true"  # Consul takes it
    lab.sync()
    assert lab.refused == [
        'service-router "web": Routes[0].Match.HTTP.PathRegex: regex "(a+)+$" refused: a quantified group '
        "contains a quantifier (catastrophic backtracking in PCRE) (last good version kept)"
    ]
    assert lab.request("/exact").backend == "v2a"
    assert lab.request("/aaaa").backend == "v1a"


@pytest.mark.parametrize("lab", BOTH_MODES, indirect=True)
def test_conformance_gray_stages(lab: RoutingLab) -> None:
    """KV stages 1-4 (override header, cookie, address lists, Host map) ahead of the routes,
    requests from distinct loopback source addresses (docs/kv-layout.md)."""
    for key, value in GRAY_KV.items():
        requests.put(f"{lab.consul_url}/v1/kv/{key}", json=value, timeout=5).raise_for_status()
    apply(lab, SCENARIOS["routes"])
    failures = []
    for source, method, path, host, headers, pool in GRAY_ROWS:
        got = lab.request(path, method, headers, host=host, source=source).backend
        if got != POOL_BACKEND[pool]:
            failures.append(f"{source} {method} {host}{path} {headers} -> {got}, want {pool}")
    assert not failures, "\n".join(failures)
