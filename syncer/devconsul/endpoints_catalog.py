"""/v1/catalog, /v1/health and /v1/status (agent/catalog_endpoint.go, health_endpoint.go)."""

from __future__ import annotations

import uuid
from typing import Any

from syncer.devconsul.acl import Authorizer
from syncer.devconsul.api import Api, Call, Response, bool_param
from syncer.devconsul.blocking import parse_query_options
from syncer.devconsul.decode import ANY_ADDRESSES, Fields, parse_check, tagged_addresses
from syncer.devconsul.encoding import DecodeError, decode_body
from syncer.devconsul.errors import HTTPError, RPCError
from syncer.devconsul.filter_schemas import CHECK_SERVICE_NODE, HEALTH_CHECK, NODE, SERVICE_NODE
from syncer.devconsul.model import DEFAULT_WEIGHTS, Check, Node, Service
from syncer.devconsul.state import Store

LEADER = "127.0.0.1:8300"


def _node_meta(call: Call) -> dict[str, str]:
    filters = {}
    for raw in call.query.get("node-meta", []):
        key, _, value = raw.partition(":")
        filters[key] = value
    return filters


def _meta_ok(meta: dict[str, str] | None, filters: dict[str, str]) -> bool:
    return all((meta or {}).get(k) == v for k, v in filters.items())


def _acl_filter(authz: Authorizer, items: list[Any]) -> list[Any]:
    # Only management tokens exist, so a token either reads everything or nothing.
    return items if authz.allowed() else []


def _tags_ok(tags: list[str] | None, wanted: list[str]) -> bool:
    have = {t.lower() for t in tags or []}
    return all(w.lower() in have for w in wanted)


def _services_named(store: Store, name: str) -> list[Service]:
    return store.services_named(name)


def health_entry(store: Store, svc: Service) -> dict[str, Any]:
    node = store.nodes[svc.node]
    node_checks = store.checks_of(svc.node)
    svc_checks = store.checks_of(svc.node, svc.id)
    return {
        "Node": node.to_json(),
        "Service": svc.node_service_json(),
        "Checks": [c.to_json() for c in node_checks + svc_checks],
    }


def filter_non_passing(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """filterNonPassing: swap-remove, so surviving entries can change order exactly as in Consul."""
    out, n, i = list(entries), len(entries), 0
    while i < n:
        if any(c["Status"] != "passing" for c in out[i]["Checks"]):
            out[i], out[n - 1] = out[n - 1], out[i]
            n -= 1
            continue
        i += 1
    return out[:n]


def _name_from(call: Call, prefix: str, missing: str) -> str:
    name = call.path[len(prefix) :]
    if not name:
        raise HTTPError(400, missing)
    return name


def health_service(api: Api, call: Call) -> Response:
    opts = parse_query_options(call.query)
    api.check_dc(call)
    authz = api.authorize(call)
    name = _name_from(call, "/v1/health/service/", "Missing service name")
    passing = bool_param(call, "passing", "Invalid value for ?passing")
    flt = api.compile_filter(opts.filter, CHECK_SERVICE_NODE)
    tags, node_meta = call.query.get("tag"), _node_meta(call)
    store = api.store

    def run() -> tuple[int, list[dict[str, Any]]]:
        with store.lock:
            services = [s for s in _services_named(store, name) if tags is None or _tags_ok(s.tags, tags)]
            return store.service_index(name, checks=True), [health_entry(store, s) for s in services]

    index, entries = api.block(call, opts, run, lambda key: key == f"svc:{name.lower()}")
    entries = [e for e in entries if _meta_ok(e["Node"]["Meta"], node_meta)]
    entries = _acl_filter(authz, flt.apply(entries))
    if passing:
        entries = filter_non_passing(entries)
    return api.json(call, entries, headers=api.meta_headers(index, opts, cached=True))


def catalog_service(api: Api, call: Call) -> Response:
    opts = parse_query_options(call.query)
    api.check_dc(call)
    authz = api.authorize(call)
    name = _name_from(call, "/v1/catalog/service/", "Missing service name")
    flt = api.compile_filter(opts.filter, SERVICE_NODE)
    tags, node_meta = call.query.get("tag"), _node_meta(call)
    store = api.store

    def run() -> tuple[int, list[dict[str, Any]]]:
        with store.lock:
            services = [s for s in _services_named(store, name) if tags is None or _tags_ok(s.tags, tags)]
            items = [s.service_node_json(store.nodes[s.node]) for s in services]
            return store.service_index(name, checks=False), items

    index, items = api.block(call, opts, run, lambda key: key == f"svc:{name.lower()}")
    items = [i for i in items if _meta_ok(i["NodeMeta"], node_meta)]
    items = _acl_filter(authz, flt.apply(items))
    return api.json(call, items, headers=api.meta_headers(index, opts, cached=True))


def catalog_services(api: Api, call: Call) -> Response:
    opts = parse_query_options(call.query)
    api.check_dc(call)
    authz = api.authorize(call)
    flt = api.compile_filter(opts.filter, SERVICE_NODE)
    node_meta = _node_meta(call)
    store = api.store

    def run() -> tuple[int, list[dict[str, Any]]]:
        with store.lock:
            items = [
                s.service_node_json(store.nodes[s.node])
                for s in sorted(store.services.values(), key=lambda s: (s.name, s.node, s.id))
            ]
            return store.index_of("services"), items

    index, items = api.block(call, opts, run, lambda key: key == "services")
    items = [i for i in items if _meta_ok(i["NodeMeta"], node_meta)]
    items = _acl_filter(authz, flt.apply(items))
    services: dict[str, set[str]] = {}
    for item in items:
        services.setdefault(item["ServiceName"], set()).update(item["ServiceTags"])
    # Consul builds the tag lists from a Go map (unspecified order); sorted here.
    out = {name: sorted(tags) for name, tags in sorted(services.items())}
    return api.json(call, out, headers=api.meta_headers(index, opts, cached=True))


def catalog_nodes(api: Api, call: Call) -> Response:
    opts = parse_query_options(call.query)
    api.check_dc(call)
    authz = api.authorize(call)
    flt = api.compile_filter(opts.filter, NODE)
    node_meta = _node_meta(call)
    store = api.store

    def run() -> tuple[int, list[dict[str, Any]]]:
        with store.lock:
            return store.index_of("nodes"), [n.to_json() for _, n in sorted(store.nodes.items())]

    index, nodes = api.block(call, opts, run, lambda key: key == "nodes")
    nodes = _acl_filter(authz, flt.apply([n for n in nodes if _meta_ok(n["Meta"], node_meta)]))
    return api.json(call, nodes, headers=api.meta_headers(index, opts))


def catalog_node(api: Api, call: Call) -> Response:
    opts = parse_query_options(call.query)
    api.check_dc(call)
    authz = api.authorize(call)
    name = _name_from(call, "/v1/catalog/node/", "Missing node name")
    store = api.store

    def run() -> tuple[int, dict[str, Any] | None]:
        with store.lock:
            node = store.nodes.get(name)
            if node is None:
                return store.index_of("nodes"), None
            services = {s.id: s.node_service_json() for s in sorted(store.services_of_node(name), key=lambda s: s.id)}
            return store.index_of("nodes", "services"), {"Node": node.to_json(), "Services": services}

    index, result = api.block(call, opts, run, lambda key: key in ("nodes", "services"))
    if not authz.allowed():
        result = None
    return api.json(call, result, headers=api.meta_headers(index, opts))


def _checks_endpoint(api: Api, call: Call, prefix: str, missing: str, pick: str) -> Response:
    opts = parse_query_options(call.query)
    api.check_dc(call)
    authz = api.authorize(call)
    value = _name_from(call, prefix, missing)
    flt = api.compile_filter(opts.filter, HEALTH_CHECK)
    store = api.store

    def selected(check: Check) -> bool:
        if pick == "service":
            return check.service_name.lower() == value.lower()
        if pick == "node":
            return check.node == value
        return value in ("any", check.status)

    def run() -> tuple[int, list[dict[str, Any]]]:
        with store.lock:
            checks = sorted((c for c in store.checks.values() if selected(c)), key=lambda c: (c.node, c.check_id))
            return store.index_of("checks"), [c.to_json() for c in checks]

    watch_key = f"svc:{value.lower()}" if pick == "service" else "checks"
    index, checks = api.block(call, opts, run, lambda key: key == watch_key)
    node_meta = _node_meta(call)
    if node_meta:
        with store.lock:
            checks = [c for c in checks if _meta_ok(getattr(store.nodes.get(c["Node"]), "meta", {}), node_meta)]
    checks = _acl_filter(authz, flt.apply(checks))
    return api.json(call, checks, headers=api.meta_headers(index, opts))


def health_checks(api: Api, call: Call) -> Response:
    return _checks_endpoint(api, call, "/v1/health/checks/", "Missing service name", "service")


def health_state(api: Api, call: Call) -> Response:
    return _checks_endpoint(api, call, "/v1/health/state/", "Missing check state", "state")


def health_node(api: Api, call: Call) -> Response:
    return _checks_endpoint(api, call, "/v1/health/node/", "Missing node name", "node")


def catalog_datacenters(api: Api, call: Call) -> Response:
    return api.json(call, [api.datacenter])


def status_leader(api: Api, call: Call) -> Response:
    return api.json(call, LEADER)


def status_peers(api: Api, call: Call) -> Response:
    return api.json(call, [LEADER])


def _decode(call: Call) -> Any:
    try:
        return decode_body(call.body)
    except DecodeError as exc:
        raise HTTPError(400, f"Request decode failed: {exc}") from None


def catalog_register(api: Api, call: Call) -> Response:
    try:
        f = Fields(_decode(call), "RegisterRequest")
        node_name, address = f.string("Node"), f.string("Address")
        node_id, skip_node = f.string("ID"), f.boolean("SkipNodeUpdate")
        node_tagged, node_meta = f.get("TaggedAddresses") or {}, f.string_map("NodeMeta") or {}
        service_raw = f.get("Service")
        service = Fields(service_raw, "NodeService") if service_raw is not None else None
        raw_checks = ([f.get("Check")] if f.get("Check") is not None else []) + list(f.get("Checks") or [])
        checks = [(Fields(raw, "HealthCheck"), parse_check(raw, "HealthCheck")) for raw in raw_checks]
    except DecodeError as exc:
        raise HTTPError(400, f"Request decode failed: {exc}") from None
    api.check_dc(call)
    authz = api.authorize(call)
    if not node_name:
        raise RPCError("Must provide node")
    if not address and not skip_node:
        raise RPCError("Must provide address if SkipNodeUpdate is not set")
    if node_id:
        try:
            uuid.UUID(node_id)
        except ValueError:
            raise RPCError("Bad node ID: uuid string is wrong length") from None
    svc = None
    if service is not None:
        name, sid = service.string("Service"), service.string("ID")
        sid = sid or name
        if sid and not name:
            raise RPCError("Must provide service name with ID")
        if service.string("Address") in ANY_ADDRESSES:
            raise RPCError("Invalid service address")
        authz.require("service", "write", name)
        weights = service.get("Weights")
        w = Fields(weights, "Weights") if weights is not None else None
        svc = Service(
            node_name,
            sid,
            name,
            tags=service.strings("Tags"),
            address=service.string("Address"),
            tagged_addresses=tagged_addresses(service),
            meta=service.string_map("Meta"),
            port=service.integer("Port"),
            socket_path=service.string("SocketPath"),
            weights={"Passing": w.integer("Passing"), "Warning": w.integer("Warning")}
            if w is not None and w.integer("Passing") >= 1
            else dict(DEFAULT_WEIGHTS),
            enable_tag_override=service.boolean("EnableTagOverride"),
            kind=service.string("Kind"),
            proxy=dict(service.get("Proxy") or {}),
            connect=dict(service.get("Connect") or {}),
        )
    store = api.store
    with store.write() as txn:
        existing = store.nodes.get(node_name)
        node = Node(
            node_name,
            node_id or (existing.id if existing else ""),
            address,
            api.datacenter,
            dict(node_tagged),
            dict(node_meta),
        )
        if existing is None or not (skip_node or existing.same(node)):
            authz.require("node", "write", node_name)
        if existing is None and skip_node:
            raise RPCError("Missing node registration")
        new_checks = []
        for cf, cdef in checks:
            check_node = cf.string("Node") or node_name
            if check_node != node_name:
                raise RPCError(f'check node "{check_node}" does not match node "{node_name}"')
            check_id = cf.string("CheckID") or cdef.name
            sid = cf.string("ServiceID")
            if sid and (svc is None or svc.id != sid) and (node_name, sid) not in store.services:
                raise RPCError("Missing service registration")
            authz.require("service" if sid else "node", "write", sid or node_name)
            new_checks.append(
                Check(
                    node_name,
                    check_id,
                    cdef.name,
                    status=cdef.status,
                    notes=cdef.notes,
                    output=cf.string("Output"),
                    service_id=sid,
                    type=cf.string("Type"),
                )
            )
        if not skip_node or existing is None:
            store.ensure_node(txn, node)
        if svc is not None:
            store.ensure_service(txn, svc)
        for check in new_checks:
            store.ensure_check(txn, check)
    return api.json(call, True)


def catalog_deregister(api: Api, call: Call) -> Response:
    try:
        f = Fields(_decode(call), "DeregisterRequest")
        node, service_id, check_id = f.string("Node"), f.string("ServiceID"), f.string("CheckID")
    except DecodeError as exc:
        raise HTTPError(400, f"Request decode failed: {exc}") from None
    api.check_dc(call)
    authz = api.authorize(call)
    if not node:
        raise RPCError("Must provide node")
    store = api.store
    with store.write() as txn:
        if service_id:
            svc = store.services.get((node, service_id))
            authz.require("service", "write", svc.name if svc else service_id)
            store.delete_service(txn, node, service_id)
        elif check_id:
            authz.require("node", "write", node)
            store.delete_check(txn, node, check_id)
        else:
            authz.require("node", "write", node)
            store.delete_node(txn, node)
    return api.json(call, True)


def register(api: Api) -> None:
    api.route("/v1/health/service/", ("GET",), health_service)
    api.route("/v1/health/checks/", ("GET",), health_checks)
    api.route("/v1/health/state/", ("GET",), health_state)
    api.route("/v1/health/node/", ("GET",), health_node)
    api.route("/v1/catalog/service/", ("GET",), catalog_service)
    api.route("/v1/catalog/services", ("GET",), catalog_services)
    api.route("/v1/catalog/nodes", ("GET",), catalog_nodes)
    api.route("/v1/catalog/node/", ("GET",), catalog_node)
    api.route("/v1/catalog/datacenters", ("GET",), catalog_datacenters)
    api.route("/v1/catalog/register", ("PUT",), catalog_register)
    api.route("/v1/catalog/deregister", ("PUT",), catalog_deregister)
    api.route("/v1/status/leader", ("GET",), status_leader)
    api.route("/v1/status/peers", ("GET",), status_peers)
