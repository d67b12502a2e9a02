"""/v1/kv (agent/kvs_endpoint.go and the KVS RPC endpoint's index rules)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from syncer.devconsul.api import Api, Call, Response
from syncer.devconsul.blocking import parse_query_options
from syncer.devconsul.errors import HTTPError, RPCError
from syncer.devconsul.model import KVEntry

MAX_VALUE_SIZE = 512 * 1024


def _conflicting(call: Call, *flags: str) -> None:
    if sum(1 for flag in flags if call.has(flag)) > 1:
        encoded = urlencode(sorted((k, v) for k, vs in call.query.items() for v in vs))
        raise HTTPError(400, "Conflicting flags: " + encoded)


def _uint(call: Call, name: str) -> int:
    raw = call.param(name)
    if not raw.isdigit():
        raise RPCError(f'strconv.ParseUint: parsing "{raw}": invalid syntax')
    return int(raw)


def kv(api: Api, call: Call) -> Response:
    key = call.path[len("/v1/kv/") :]
    opts = parse_query_options(call.query)
    if call.method == "GET":
        return _get(api, call, key, opts)
    if call.method == "PUT":
        return _put(api, call, key)
    return _delete(api, call, key)


def _get(api: Api, call: Call, key: str, opts: Any) -> Response:
    api.check_dc(call)
    authz = api.authorize(call)
    store = api.store
    listing = call.has("keys")
    recurse = call.has("recurse")
    if not (listing or recurse) and not key:
        raise HTTPError(400, "Missing key name")
    separator = call.param("separator") if call.has("separator") else call.param("seperator")

    if listing or recurse:

        def run() -> tuple[int, list[Any]]:
            with store.lock:
                entries = sorted((e for k, e in store.kv.items() if k.startswith(key)), key=lambda e: e.key)
                if listing:
                    return store.kv_prefix_index(key), _collapse([e.key for e in entries], key, separator)
                return store.kv_prefix_index(key), [e.to_json() for e in entries]

        index, items = api.block(call, opts, run, lambda k: k.startswith("kv:" + key))
        if not authz.allowed():
            items = []  # KVS.List/ListKeys filter what the token cannot read
        headers = api.meta_headers(index, consistency=False)
        if not items and (recurse or key):
            return Response(404, None, None, headers)
        return api.json(call, items, headers=headers)

    authz.require("key", "read", key)  # KVS.Get checks before it blocks

    def run_one() -> tuple[int, KVEntry | None]:
        with store.lock:
            entry = store.kv.get(key)
            if entry is None:
                return store.kv_table_index(), None
            return entry.modify_index, KVEntry(**vars(entry))

    index, entry = api.block(call, opts, run_one, lambda k: k == "kv:" + key)
    headers = api.meta_headers(index, consistency=False)
    if entry is None:
        return Response(404, None, None, headers)
    if call.has("raw"):
        headers.update({"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"})
        return Response(200, entry.value or b"", "text/plain", headers)
    return api.json(call, [entry.to_json()], headers=headers)


def _collapse(keys: list[str], prefix: str, separator: str) -> list[str]:
    out: list[str] = []
    for key in keys:
        rest = key[len(prefix) :]
        shown = prefix + rest[: rest.index(separator) + len(separator)] if separator and separator in rest else key
        if not out or out[-1] != shown:
            out.append(shown)
    return out


def _put(api: Api, call: Call, key: str) -> Response:
    if not key:
        raise HTTPError(400, "Missing key name")
    _conflicting(call, "cas", "acquire", "release")
    flags = _uint(call, "flags") if call.has("flags") else 0
    cas = _uint(call, "cas") if call.has("cas") else None
    if len(call.body) > MAX_VALUE_SIZE:
        raise HTTPError(
            413,
            f"Request body({len(call.body)} bytes) too large, max size: {MAX_VALUE_SIZE} bytes. "
            "See https://www.consul.io/docs/agent/config/config-files#kv_max_value_size.",
        )
    api.check_dc(call)
    authz = api.authorize(call)
    authz.require("key", "write", key)
    if call.has("acquire") or call.has("release"):
        session = call.param("acquire") or call.param("release")
        raise RPCError(f'invalid session "{session}"')  # dev-consul has no sessions
    value = call.body or None  # Go's empty buffer marshals as null
    store = api.store
    with store.write() as txn:
        existing = store.kv.get(key)
        ok = True
        if cas is not None:
            ok = existing is None if cas == 0 else existing is not None and existing.modify_index == cas
        if ok:
            store.kv[key] = KVEntry(
                key,
                value,
                flags,
                existing.create_index if existing else txn.idx,
                txn.idx,
                existing.lock_index if existing else 0,
            )
            txn.bump("kvs", "kv:" + key)
    return api.json(call, ok)


def _delete(api: Api, call: Call, key: str) -> Response:
    _conflicting(call, "recurse", "cas")
    recurse = call.has("recurse")
    if not recurse and not key:
        raise HTTPError(400, "Missing key name")
    cas = _uint(call, "cas") if call.has("cas") else None
    api.check_dc(call)
    authz = api.authorize(call)
    authz.require("key", "write", key)
    store = api.store
    with store.write() as txn:
        ok = True
        if recurse:
            doomed = [k for k in store.kv if k.startswith(key)]
            for k in doomed:
                del store.kv[k]
                txn.touched.add("kv:" + k)
            if doomed:
                store.tombstones[key] = txn.idx  # one tombstone for the whole prefix, as Consul does
                txn.bump("tombstones", "kv:" + key)
                txn.bump("kvs", "kv:" + key)
        else:
            existing = store.kv.get(key)
            if cas is not None and (existing is None or existing.modify_index != cas):
                ok = existing is None
            elif existing is not None:
                del store.kv[key]
                store.tombstones[key] = txn.idx
                txn.bump("tombstones", "kv:" + key)
                txn.bump("kvs", "kv:" + key)
    return api.json(call, ok if cas is not None else True)


def register(api: Api) -> None:
    api.route("/v1/kv/", ("GET", "PUT", "DELETE"), kv)
