"""Fixtures: a DevConsul on a loopback port per test, plus py-consul and requests clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import consul
import pytest
import requests

from syncer.devconsul import DevConsul


@pytest.fixture
def dev() -> Iterator[DevConsul]:
    with DevConsul(port=0, seed=1) as server:
        yield server


@pytest.fixture
def client(dev: DevConsul) -> consul.Consul:
    return consul.Consul(host="127.0.0.1", port=dev.port)


@pytest.fixture
def http(dev: DevConsul) -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture
def register_web(dev: DevConsul, http: requests.Session) -> Callable[..., None]:
    """Register a passing instance of "web" (ID web1) through the raw agent API; ``extra`` overrides."""

    def register(**extra: Any) -> None:
        body = {
            "Name": "web",
            "ID": "web1",
            "Address": "10.0.0.1",
            "Port": 8080,
            "Tags": ["v1"],
            "Check": {"TTL": "30s", "Status": "passing"},
        }
        body.update(extra)
        resp = http.put(f"{dev.url}/v1/agent/service/register", json=body, timeout=5)
        assert resp.status_code == 200, resp.text

    return register
