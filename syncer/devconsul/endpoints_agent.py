"""/v1/agent (agent/agent_endpoint.go): the local agent's services, checks and TTL updates."""

from __future__ import annotations

import hashlib
from typing import Any

from syncer.devconsul.agent import LocalAgent
from syncer.devconsul.api import Api, Call, Handler, Response, parse_go_bool
from syncer.devconsul.blocking import effective_wait, parse_query_options, with_jitter
from syncer.devconsul.decode import ANY_ADDRESSES, VALID_STATUSES, Fields, parse_check, parse_service
from syncer.devconsul.encoding import DecodeError, decode_body, go_json
from syncer.devconsul.errors import HTTPError
from syncer.devconsul.filter_schemas import AGENT_SERVICE, HEALTH_CHECK
from syncer.devconsul.validation import validate_service


def _decode(call: Call) -> Any:
    try:
        return decode_body(call.body)
    except DecodeError as exc:
        raise HTTPError(400, f"Request decode failed: {exc}") from None


def _tail(call: Call, prefix: str) -> str:
    return call.path[len(prefix) :]


def agent_self(api: Api, call: Call) -> Response:
    authz = api.authorize(call)
    agent = api.agent
    authz.require("agent", "read", agent.node_name)
    config = {
        "Datacenter": agent.datacenter,
        "PrimaryDatacenter": agent.datacenter,
        "NodeName": agent.node_name,
        "NodeID": agent.node_id,
        "Revision": "devconsul",
        "Server": True,
        "Version": agent.version,
        "BuildDate": "2024-01-01T00:00:00Z",
    }
    body = {
        "Config": config,
        "DebugConfig": {
            "Datacenter": agent.datacenter,
            "NodeName": agent.node_name,
            "ACLsEnabled": api.acl.enabled,
            "DevMode": False,
        },
        "Coord": {"Vec": [0.0] * 8, "Error": 1.5, "Adjustment": 0.0, "Height": 1e-05},
        "Member": _serf_member(agent, vsn=True),
        "Stats": {
            "agent": {
                "check_monitors": "0",
                "check_ttls": str(len(agent.runners)),
                "checks": str(len(agent.checks())),
                "services": str(len(agent.services())),
            },
            "consul": {"leader": "true", "leader_addr": "127.0.0.1:8300", "server": "true", "known_datacenters": "1"},
        },
        "Meta": {"consul-network-segment": "", "consul-version": agent.version},
    }
    return api.json(call, body)


def _serf_member(agent: LocalAgent, vsn: bool) -> dict[str, Any]:
    """This node as a serf LAN member (``/v1/agent/self`` also shows the ``vsn`` tag)."""
    tags = {"dc": agent.datacenter, "role": "consul", "id": agent.node_id, **({"vsn": "2"} if vsn else {})}
    return {
        "Name": agent.node_name,
        "Addr": agent.address,
        "Port": 8301,
        "Tags": tags,
        "Status": 1,
        "ProtocolMin": 1,
        "ProtocolMax": 5,
        "ProtocolCur": 2,
        "DelegateMin": 2,
        "DelegateMax": 5,
        "DelegateCur": 4,
    }


def agent_members(api: Api, call: Call) -> Response:
    authz = api.authorize(call)
    agent = api.agent
    return api.json(call, [_serf_member(agent, vsn=False)] if authz.allowed() else [])


def agent_services(api: Api, call: Call) -> Response:
    authz = api.authorize(call)
    opts = parse_query_options(call.query)
    flt = api.compile_filter(opts.filter, AGENT_SERVICE)
    services = {s.id: s.agent_json(api.datacenter) for s in sorted(api.agent.services(), key=lambda s: s.id)}
    services = {k: v for k, v in services.items() if flt.matches(v)}
    return api.json(call, services if authz.allowed() else {})


def agent_checks(api: Api, call: Call) -> Response:
    authz = api.authorize(call)
    opts = parse_query_options(call.query)
    flt = api.compile_filter(opts.filter, HEALTH_CHECK)
    checks = {c.check_id: c.to_json(local=True) for c in sorted(api.agent.checks(), key=lambda c: c.check_id)}
    checks = {k: v for k, v in checks.items() if flt.matches(v)}
    return api.json(call, checks if authz.allowed() else {})


def agent_service(api: Api, call: Call) -> Response:
    """GET /v1/agent/service/:id with hash-based blocking (X-Consul-ContentHash)."""
    service_id = _tail(call, "/v1/agent/service/")
    opts = parse_query_options(call.query)
    authz = api.authorize(call)
    wanted = call.param("hash")
    store = api.store

    def run() -> tuple[str, dict[str, Any] | None]:
        svc = api.agent.service(service_id)
        if svc is None:
            return "", None
        body = svc.agent_json(api.datacenter)
        digest = hashlib.sha256(go_json(body)).hexdigest()[:16]
        body["ContentHash"] = digest
        return digest, body

    timeout = 0.0
    if wanted:
        timeout = with_jitter(effective_wait(opts.wait, api.default_wait, api.max_wait), api.rng)
    digest, body = store.block(
        run, lambda r: r[0] != wanted, lambda key: key.startswith("svc:"), timeout, call.cancelled
    )
    if body is None:
        raise HTTPError(404, f"unknown service ID: {service_id}")
    authz.require("service", "read", body["Service"])
    return api.json(call, body, headers={"X-Consul-ContentHash": digest})


def agent_register_service(api: Api, call: Call) -> Response:
    try:
        sdef = parse_service(_decode(call))
    except DecodeError as exc:
        raise HTTPError(400, f"Request decode failed: {exc}") from None
    if not sdef.name:
        raise HTTPError(400, "Missing service name")
    if sdef.address in ANY_ADDRESSES:
        raise HTTPError(400, "Invalid service address")
    authz = api.authorize(call)
    validate_service(sdef)
    authz.require("service", "write", sdef.name)
    existing = api.agent.service(sdef.id)
    if existing is not None:
        authz.require("service", "write", existing.name)
    replace = call.has("replace-existing-checks") and call.param("replace-existing-checks") in ("", "true")
    api.agent.register_service(sdef, replace_existing_checks=replace)
    return Response(200)


def agent_deregister_service(api: Api, call: Call) -> Response:
    service_id = _tail(call, "/v1/agent/service/deregister/")
    authz = api.authorize(call)
    svc = api.agent.require_service(service_id)
    authz.require("service", "write", svc.name)
    api.agent.deregister_service(service_id)
    return Response(200)


def _parse_enable(call: Call) -> bool:
    if not call.has("enable"):
        raise HTTPError(400, "Missing value for enable")
    raw = call.param("enable")
    value = parse_go_bool(raw)
    if value is None:
        raise HTTPError(400, f'Invalid value for enable: "{raw}"')
    return value


def agent_service_maintenance(api: Api, call: Call) -> Response:
    service_id = _tail(call, "/v1/agent/service/maintenance/")
    if not service_id:
        raise HTTPError(400, "Missing service ID")
    enable = _parse_enable(call)
    authz = api.authorize(call)
    svc = api.agent.require_service(service_id)
    authz.require("service", "write", svc.name)
    api.agent.service_maintenance(service_id, enable, call.param("reason"))
    return Response(200)


def agent_node_maintenance(api: Api, call: Call) -> Response:
    enable = _parse_enable(call)
    authz = api.authorize(call)
    authz.require("node", "write", api.agent.node_name)
    api.agent.node_maintenance(enable, call.param("reason"))
    return Response(200)


def agent_register_check(api: Api, call: Call) -> Response:
    authz = api.authorize(call)
    try:
        cdef = parse_check(_decode(call), "CheckDefinition")
    except DecodeError as exc:
        raise HTTPError(400, f"Request decode failed: {exc}") from None
    if cdef.service_id:
        svc = api.agent.service(cdef.service_id)
        authz.require("service", "write", svc.name if svc else cdef.service_id)
    else:
        authz.require("node", "write", api.agent.node_name)
    api.agent.register_check(cdef)
    return Response(200)


def _vet_check(api: Api, call: Call, check_id: str) -> None:
    """vetCheckUpdateWithAuthorizer: 404 for an unknown check, then service/node write."""
    authz = api.authorize(call)
    check = api.agent.require_check(check_id)
    if check.service_name:
        authz.require("service", "write", check.service_name)
    else:
        authz.require("node", "write", api.agent.node_name)


def agent_deregister_check(api: Api, call: Call) -> Response:
    check_id = _tail(call, "/v1/agent/check/deregister/")
    _vet_check(api, call, check_id)
    api.agent.deregister_check(check_id)
    return Response(200)


def _ttl(status: str, prefix: str) -> Handler:
    def handler(api: Api, call: Call) -> Response:
        check_id = _tail(call, prefix)
        _vet_check(api, call, check_id)
        api.agent.update_ttl(check_id, status, call.param("note"))
        return Response(200)

    return handler


def agent_check_update(api: Api, call: Call) -> Response:
    try:
        f = Fields(_decode(call), "checkUpdate")
        status, output = f.string("Status"), f.string("Output")
    except DecodeError as exc:
        raise HTTPError(400, f"Request decode failed: {exc}") from None
    if status not in VALID_STATUSES:
        raise HTTPError(400, f"Invalid check status: '{status}'")
    check_id = _tail(call, "/v1/agent/check/update/")
    _vet_check(api, call, check_id)
    api.agent.update_ttl(check_id, status, output)
    return Response(200)


def register(api: Api) -> None:
    api.route("/v1/agent/self", ("GET",), agent_self)
    api.route("/v1/agent/members", ("GET",), agent_members)
    api.route("/v1/agent/services", ("GET",), agent_services)
    api.route("/v1/agent/checks", ("GET",), agent_checks)
    api.route("/v1/agent/service/", ("GET",), agent_service)
    api.route("/v1/agent/service/register", ("PUT",), agent_register_service)
    api.route("/v1/agent/service/deregister/", ("PUT",), agent_deregister_service)
    api.route("/v1/agent/service/maintenance/", ("PUT",), agent_service_maintenance)
    api.route("/v1/agent/maintenance", ("PUT",), agent_node_maintenance)
    api.route("/v1/agent/check/register", ("PUT",), agent_register_check)
    api.route("/v1/agent/check/deregister/", ("PUT",), agent_deregister_check)
    api.route("/v1/agent/check/pass/", ("PUT",), _ttl("passing", "/v1/agent/check/pass/"))
    api.route("/v1/agent/check/warn/", ("PUT",), _ttl("warning", "/v1/agent/check/warn/"))
    api.route("/v1/agent/check/fail/", ("PUT",), _ttl("critical", "/v1/agent/check/fail/"))
    api.route("/v1/agent/check/update/", ("PUT",), agent_check_update)
