"""/v1/config (agent/config_endpoint.go, the ConfigEntry RPC endpoint and its state store).

Supported kinds: service-defaults, service-resolver, service-splitter, service-router.
Writes are validated as Consul validates them (``syncer.routing.entries.consul_check``,
worded like agent/structs/config_entry_discoverychain.go) and, like Consul's discovery
chain compiler, a router or splitter is refused while its service's protocol (from
service-defaults, default "tcp") does not permit L7 routing. Every read blocks on the
``config-entries`` table index, as Consul's state store does for get and list alike.
"""

from __future__ import annotations

from typing import Any

from syncer.devconsul.api import Api, Call, Response
from syncer.devconsul.blocking import parse_query_options
from syncer.devconsul.encoding import DecodeError, decode_body
from syncer.devconsul.errors import HTTPError, RPCError
from syncer.devconsul.state import ConfigEntryRecord, Store
from syncer.routing.entries import (
    DEFAULTS,
    HTTP_PROTOCOLS,
    KINDS,
    ROUTER,
    SPLITTER,
    ConsulRefusal,
    EntryError,
    canonical,
    consul_check,
)

TABLE = "config-entries"
WATCH_KEY = "cfg"


def _protocol(store: Store, name: str) -> str:
    record = store.config_entries.get((DEFAULTS, name))
    protocol = record.body.get("Protocol") if record is not None else None
    return str(protocol or "tcp").lower()


def _refuse_protocol(name: str, protocol: str) -> RPCError:
    return RPCError(
        f'discovery chain "{name}" uses a protocol "{protocol}" that does not permit advanced routing or '
        "splitting behavior"
    )


def _uint(call: Call, name: str) -> int:
    raw = call.param(name)
    if not raw.isdigit():
        raise HTTPError(400, f"Must specify {name} as a non-negative integer, got {raw!r}")
    return int(raw)


def _put(api: Api, call: Call) -> Response:
    try:
        raw = decode_body(call.body)
    except DecodeError as exc:
        raise HTTPError(400, f"Request decoding failed: {exc}") from None
    if not isinstance(raw, dict):
        raise HTTPError(400, "Request decoding failed: Payload does not contain a Kind key at the top level")
    body = canonical(raw)
    kind = body.get("Kind")
    if not isinstance(kind, str) or not kind:
        raise HTTPError(400, "Request decoding failed: Payload does not contain a Kind key at the top level")
    if kind not in KINDS:
        raise HTTPError(400, f"Request decoding failed: invalid config entry kind: {kind}")
    cas = _uint(call, "cas") if call.has("cas") else None
    api.check_dc(call)
    try:
        consul_check(body)
    except (ConsulRefusal, EntryError) as exc:
        raise RPCError(str(exc.reason if isinstance(exc, EntryError) else exc)) from None
    name = str(body["Name"])
    api.authorize(call).require("service", "write", name)
    store = api.store
    kept = {k: v for k, v in body.items() if k not in ("Kind", "Name", "CreateIndex", "ModifyIndex")}
    with store.write() as txn:
        if kind in (ROUTER, SPLITTER) and (protocol := _protocol(store, name)) not in HTTP_PROTOCOLS:
            raise _refuse_protocol(name, protocol)
        if kind == DEFAULTS:
            protocol = str(kept.get("Protocol") or "tcp").lower()
            if protocol not in HTTP_PROTOCOLS and any((k, name) in store.config_entries for k in (ROUTER, SPLITTER)):
                raise _refuse_protocol(name, protocol)
        existing = store.config_entries.get((kind, name))
        ok = True
        if cas is not None:
            ok = existing is None if cas == 0 else existing is not None and existing.modify_index == cas
        if ok:
            store.config_entries[(kind, name)] = ConfigEntryRecord(
                kind, name, kept, existing.create_index if existing else txn.idx, txn.idx
            )
            txn.bump(TABLE, WATCH_KEY)
    return api.json(call, ok)


def _get(api: Api, call: Call, kind: str, name: str) -> Response:
    if kind not in KINDS:
        raise HTTPError(400, f"invalid config entry kind: {kind}")
    opts = parse_query_options(call.query)
    api.check_dc(call)
    authz = api.authorize(call)
    store = api.store
    if name:
        authz.require("service", "read", name)

        def run_one() -> tuple[int, dict[str, Any] | None]:
            with store.lock:
                record = store.config_entries.get((kind, name))
                return store.index_of(TABLE), record.to_json() if record else None

        index, entry = api.block(call, opts, run_one, lambda k: k == WATCH_KEY)
        headers = api.meta_headers(index, opts)
        if entry is None:
            raise HTTPError(404, f'Config entry not found for "{kind}" / "{name}"', headers)
        return api.json(call, entry, headers=headers)

    def run_list() -> tuple[int, list[dict[str, Any]]]:
        with store.lock:
            records = sorted((r for (k, _), r in store.config_entries.items() if k == kind), key=lambda r: r.name)
            return store.index_of(TABLE), [r.to_json() for r in records]

    index, entries = api.block(call, opts, run_list, lambda k: k == WATCH_KEY)
    if not authz.allowed():
        entries = []  # the list is filtered by what the token may read
    return api.json(call, entries, headers=api.meta_headers(index, opts))


def _delete(api: Api, call: Call, kind: str, name: str) -> Response:
    if kind not in KINDS:
        raise HTTPError(400, f"invalid config entry kind: {kind}")
    if not name:
        raise HTTPError(400, "Missing config entry name")
    cas = _uint(call, "cas") if call.has("cas") else None
    api.check_dc(call)
    api.authorize(call).require("service", "write", name)
    store = api.store
    with store.write() as txn:
        existing = store.config_entries.get((kind, name))
        if (
            kind == DEFAULTS
            and existing is not None
            and any((k, name) in store.config_entries for k in (ROUTER, SPLITTER))
        ):
            raise _refuse_protocol(name, "tcp")
        ok = True
        if cas is not None and (existing is None or existing.modify_index != cas):
            ok = False
        elif existing is not None:
            del store.config_entries[(kind, name)]
            txn.bump(TABLE, WATCH_KEY)
    return api.json(call, ok)


def config(api: Api, call: Call) -> Response:
    if call.path in ("/v1/config", "/v1/config/"):
        if call.method != "PUT":
            raise HTTPError(405, f"method {call.method} not allowed", {"Allow": "OPTIONS,PUT"})
        return _put(api, call)
    kind, _, name = call.path[len("/v1/config/") :].partition("/")
    if call.method == "GET":
        return _get(api, call, kind, name)
    if call.method == "DELETE":
        return _delete(api, call, kind, name)
    raise HTTPError(405, f"method {call.method} not allowed", {"Allow": "OPTIONS,GET,DELETE"})


def register(api: Api) -> None:
    api.route("/v1/config", ("PUT",), config)
    api.route("/v1/config/", ("GET", "PUT", "DELETE"), config)
