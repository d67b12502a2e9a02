"""Api mode: keep the Lua endpoint's routing tables equal to ``Desired.routing``.

One PUT per entry whose table changed (compared as the exact bytes last acknowledged),
one DELETE per entry that has no table any more. Pools are upstreams and are pushed by
ApiSink first, so a table never points at a pool nginx does not have yet. After a
re-read of the endpoint (nginx restarted, conflict) every table is compared again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from syncer.effects.admin_http import AdminClient, AdminError
from syncer.routing.payload import encode
from syncer.routing.table import RouteTable


def _canonical(table: Any) -> bytes:
    return json.dumps(table, sort_keys=True, separators=(",", ":")).encode()


class RoutesPusher:
    def __init__(self, client: AdminClient) -> None:
        self._client = client
        self._acked: dict[str, bytes] | None = None

    def forget(self) -> None:
        self._acked = None

    def _call(self, method: str, path: str, body: bytes | None = None) -> Any:
        response = self._client._request(method, path, data=body)  # the sink's admin session
        if response.status_code != 200:
            raise self._client._error(response, f"{method} {path}")
        return self._client._json(response, f"{method} {path}")

    def _read(self) -> dict[str, bytes]:
        body = self._call("GET", "/routes")
        tables = body.get("routes") if isinstance(body, dict) else None
        if not isinstance(tables, dict):
            raise AdminError("GET /routes: answer lacks routes")
        return {name: _canonical(v.get("table")) for name, v in tables.items() if isinstance(v, dict)}

    def holds_tables(self) -> bool:
        """Whether this sink has pushed (or read back) routing tables it may need to remove."""
        return bool(self._acked)

    def sync(self, tables: Mapping[str, RouteTable]) -> int:
        """Push what changed; returns the number of writes."""
        if self._acked is None:
            self._acked = self._read()
        writes = 0
        for entry in sorted(tables):
            body = encode(tables[entry])
            if self._acked.get(entry) == body:
                continue
            self._call("PUT", f"/routes/{quote(entry, safe='')}", body)
            self._acked[entry] = body
            writes += 1
        for entry in sorted(set(self._acked) - set(tables)):
            self._call("DELETE", f"/routes/{quote(entry, safe='')}")
            del self._acked[entry]
            writes += 1
        return writes
