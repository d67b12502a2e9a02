"""HTTP client for the dynamic-upstream admin API inside nginx (docs/admin-api.md).

Talks over loopback TCP or a unix socket, always with the bearer token in a header.
Every answer is checked for shape before it is believed.
"""

from __future__ import annotations

import json
import socket
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool


class AdminError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class AdminUnavailable(AdminError):
    """No answer at all: nginx down, socket missing, timeout."""


class VersionConflict(AdminError):
    def __init__(self, name: str, version: int | None) -> None:
        self.version = version
        super().__init__(f"upstream {name!r} changed under us (now version {version})", 409)


@dataclass(frozen=True)
class Acked:
    """An upstream as the endpoint acknowledges it."""

    version: int
    servers: tuple[dict[str, Any], ...]
    hash_on: str | None = None


class _UnixConnection(HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout if isinstance(self.timeout, int | float) else None)
        sock.connect(self._path)
        self.sock = sock


class _UnixPool(HTTPConnectionPool):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path
        self._timeout_s = timeout

    def _new_conn(self) -> HTTPConnection:
        return _UnixConnection(self._path, self._timeout_s)


class _UnixAdapter(HTTPAdapter):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__(max_retries=0)
        self._pool = _UnixPool(path, timeout)

    def get_connection_with_tls_context(self, *args: Any, **kwargs: Any) -> HTTPConnectionPool:
        return self._pool

    def get_connection(self, *args: Any, **kwargs: Any) -> HTTPConnectionPool:  # requests < 2.32
        return self._pool

    def close(self) -> None:
        self._pool.close()
        super().close()


@dataclass(frozen=True)
class Summary:
    """``GET /summary``: what the reconcile probe compares, in a constant-size answer."""

    generation: str
    upstreams: int  # how many the endpoint holds
    digest: int  # XOR of crc32("<name> <version>") over them (see ``digest``)
    dict_name: str = ""
    dict_capacity: int = 0  # lua_shared_dict size, bytes
    dict_free: int = 0  # bytes in free pages
    max_body: int | None = None
    max_batch: int | None = None


@dataclass(frozen=True)
class Outcome:
    """One upstream's result inside a batch answer."""

    status: int
    version: int | None = None
    error: str = ""


def digest(versions: dict[str, int]) -> int:
    """The endpoint's digest of ``{name: version}`` (same formula as lua/syncer/state.lua)."""
    value = 0
    for name, version in versions.items():
        value ^= zlib.crc32(f"{name} {version}".encode())
    return value


def _int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _acked(name: str, body: Any) -> Acked:
    if not isinstance(body, dict):
        raise AdminError(f"upstream {name!r}: answer is not an object")
    version, servers = body.get("version"), body.get("servers")
    if isinstance(version, bool) or not isinstance(version, int) or not isinstance(servers, list):
        raise AdminError(f"upstream {name!r}: answer lacks version or servers")
    if not all(isinstance(s, dict) for s in servers):
        raise AdminError(f"upstream {name!r}: servers must be objects")
    hash_on = body.get("hash_on")
    return Acked(version, tuple(servers), hash_on if isinstance(hash_on, str) else None)


class AdminClient:
    def __init__(self, endpoint: str, token: str, timeout: float = 5.0) -> None:
        self.endpoint = endpoint
        self._session = requests.Session()
        self._timeout = timeout
        if endpoint.startswith("unix:"):
            self._base = "http://syncer-admin"
            self._session.mount("http://syncer-admin", _UnixAdapter(endpoint[5:], timeout))
        else:
            self._base = endpoint.rstrip("/")
        self._session.headers["Authorization"] = f"Bearer {token}"
        self._session.headers["Content-Type"] = "application/json"

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            return self._session.request(method, self._base + path, timeout=self._timeout, **kwargs)
        except requests.RequestException as exc:
            raise AdminUnavailable(f"admin API at {self.endpoint} unreachable: {type(exc).__name__}") from exc

    @staticmethod
    def _json(response: requests.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise AdminError(f"{what}: answer is not JSON ({response.status_code})", response.status_code) from None

    @staticmethod
    def _error(response: requests.Response, what: str) -> AdminError:
        try:
            reason = response.json().get("error", "")
        except (ValueError, AttributeError):
            reason = response.text[:200]
        cls = AdminUnavailable if response.status_code >= 500 else AdminError
        return cls(f"{what}: {response.status_code} {reason}", response.status_code)

    def list(self) -> tuple[str, dict[str, Acked]]:
        """(generation, upstreams) as the endpoint holds them now."""
        response = self._request("GET", "/upstreams")
        if response.status_code != 200:
            raise self._error(response, "GET /upstreams")
        body = self._json(response, "GET /upstreams")
        generation, upstreams = body.get("generation"), body.get("upstreams")
        if not isinstance(generation, str) or not isinstance(upstreams, dict):
            raise AdminError("GET /upstreams: answer lacks generation or upstreams")
        return generation, {name: _acked(name, value) for name, value in upstreams.items()}

    def put(self, name: str, payload: dict[str, Any], if_match: int | None) -> tuple[str | None, Acked]:
        headers = {"If-Match": f'"{if_match}"'} if if_match is not None else {}
        path = f"/upstreams/{quote(name, safe='')}"
        response = self._request("PUT", path, data=json.dumps(payload), headers=headers)
        if response.status_code == 409:
            body = self._json(response, f"PUT {path}")
            version = body.get("version") if isinstance(body, dict) else None
            raise VersionConflict(name, version if isinstance(version, int) else None)
        if response.status_code != 200:
            raise self._error(response, f"PUT {path}")
        body = self._json(response, f"PUT {path}")
        generation = body.get("generation") if isinstance(body, dict) else None
        return (generation if isinstance(generation, str) else None), _acked(name, body)

    def summary(self) -> Summary:
        """The O(1) summary: generation, count and digest of versions, dict and limits."""
        response = self._request("GET", "/summary")
        if response.status_code != 200:
            raise self._error(response, "GET /summary")
        body = self._json(response, "GET /summary")
        if not isinstance(body, dict):
            raise AdminError("GET /summary: answer is not an object")
        generation, count, value = body.get("generation"), _int(body, "upstreams"), _int(body, "digest")
        if not isinstance(generation, str) or count is None or value is None:
            raise AdminError("GET /summary: answer lacks generation, upstreams or digest")
        shm: dict[str, Any] = body["dict"] if isinstance(body.get("dict"), dict) else {}
        limits: dict[str, Any] = body["limits"] if isinstance(body.get("limits"), dict) else {}
        return Summary(
            generation,
            count,
            value,
            str(shm.get("name", "")),
            _int(shm, "capacity") or 0,
            _int(shm, "free") or 0,
            _int(limits, "max_body"),
            _int(limits, "max_batch"),
        )

    def get(self, name: str) -> Acked | None:
        path = f"/upstreams/{quote(name, safe='')}"
        response = self._request("GET", path)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._error(response, f"GET {path}")
        return _acked(name, self._json(response, f"GET {path}"))

    def batch(self, entries: dict[str, dict[str, Any]]) -> tuple[str | None, dict[str, Outcome]]:
        """``PATCH /upstreams``: many upstreams, one request; a result for each of them.

        ``entries``: name -> PUT body, plus ``"if_match": <version>`` where one is known.
        """
        body = json.dumps({"upstreams": entries}, separators=(",", ":"))
        response = self._request("PATCH", "/upstreams", data=body)
        if response.status_code != 200:
            raise self._error(response, f"PATCH /upstreams ({len(entries)} upstreams)")
        answer = self._json(response, "PATCH /upstreams")
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, dict):
            raise AdminError("PATCH /upstreams: answer lacks results")
        outcomes: dict[str, Outcome] = {}
        for name in entries:
            item = results.get(name)
            if not isinstance(item, dict) or _int(item, "status") is None:
                outcomes[name] = Outcome(500, error="no result for this upstream in the answer")
                continue
            error = item.get("error")
            outcomes[name] = Outcome(item["status"], _int(item, "version"), error if isinstance(error, str) else "")
        generation = answer.get("generation")
        return (generation if isinstance(generation, str) else None), outcomes

    def close(self) -> None:
        self._session.close()
