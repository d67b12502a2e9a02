"""/_dev/...: fault injection and counters, on a path prefix Consul never uses."""

from __future__ import annotations

from typing import Any

from syncer.devconsul.api import Api, Call, Response
from syncer.devconsul.encoding import DecodeError, decode_body
from syncer.devconsul.errors import HTTPError
from syncer.devconsul.faults import Fault


def faults(api: Api, call: Call) -> Response:
    if call.method == "GET":
        return api.json(call, [f.to_json() for f in api.faults.active()])
    if call.method == "DELETE":
        api.faults.clear()
        return api.json(call, True)
    try:
        payload = decode_body(call.body)
    except DecodeError as exc:
        raise HTTPError(400, f"Request decode failed: {exc}") from None
    items: list[Any] = payload if isinstance(payload, list) else [payload]
    created: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict):
            raise HTTPError(400, "a fault is a JSON object")
        if item.get("kind") == "reset_index":
            to = item.get("index")
            if not isinstance(to, int) or isinstance(to, bool) or to < 0:
                raise HTTPError(400, "reset_index needs a non-negative integer index")
            api.faults.reset_index(to)
            created.append({"kind": "reset_index", "index": to})
            continue
        try:
            created.append(api.faults.add(Fault.from_json(item)).to_json())
        except (TypeError, ValueError) as exc:
            raise HTTPError(400, str(exc)) from None
    return api.json(call, created)


def fault_by_id(api: Api, call: Call) -> Response:
    raw = call.path[len("/_dev/faults/") :]
    if not raw.isdigit():
        raise HTTPError(400, "fault id must be an integer")
    if not api.faults.remove(int(raw)):
        raise HTTPError(404, f"no fault with id {raw}")
    return api.json(call, True)


def stats(api: Api, call: Call) -> Response:
    return api.json(call, api.stats_provider())


def register(api: Api) -> None:
    api.route("/_dev/faults", ("GET", "PUT", "POST", "DELETE"), faults)
    api.route("/_dev/faults/", ("DELETE",), fault_by_id)
    api.route("/_dev/stats", ("GET",), stats)
