"""Drive a Consul agent's HTTP API the way an operator's tooling would (registrations,
check updates), for tests, the demo and the benchmark. Works against the dev Consul
and a real agent alike: only documented endpoints and JSON."""

from __future__ import annotations

from typing import Any

import requests


class ConsulWriter:
    def __init__(self, url: str, token: str | None = None, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self._session = requests.Session()
        self._timeout = timeout
        if token:
            self._session.headers["X-Consul-Token"] = token

    def _put(self, path: str, body: Any = None) -> None:
        response = self._session.put(self.url + path, json=body, timeout=self._timeout)
        response.raise_for_status()

    def register(
        self,
        name: str,
        instance_id: str,
        port: int,
        address: str = "127.0.0.1",
        status: str = "passing",
        weights: dict[str, int] | None = None,
        meta: dict[str, str] | None = None,
        tags: list[str] | None = None,
    ) -> str:
        """Register an instance with one TTL check in ``status``; returns the check ID."""
        check_id = f"service:{instance_id}"
        body: dict[str, Any] = {
            "Name": name,
            "ID": instance_id,
            "Address": address,
            "Port": port,
            "Tags": tags or [],
            "Meta": meta or {},
            "Check": {"CheckID": check_id, "TTL": "10m", "Status": status},
        }
        if weights is not None:
            body["Weights"] = weights
        self._put("/v1/agent/service/register", body)
        return check_id

    def deregister(self, instance_id: str) -> None:
        self._put(f"/v1/agent/service/deregister/{instance_id}")

    def check(self, check_id: str, status: str) -> None:
        verb = {"passing": "pass", "warning": "warn", "critical": "fail"}[status]
        self._put(f"/v1/agent/check/{verb}/{check_id}")

    def close(self) -> None:
        self._session.close()
