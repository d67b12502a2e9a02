"""Catalog records and their JSON shapes, field for field as Consul's structs marshal.

Shapes follow Consul 1.17+ (agent/structs/structs.go): ``Node``, ``NodeService`` (the
``Service`` of a health entry), ``ServiceNode`` (a flat catalog entry), ``HealthCheck``,
``api.AgentService`` and ``DirEntry``. Go marshals struct fields in declaration order
and map keys sorted; ``omitempty`` fields are left out when empty.
"""

from __future__ import annotations

import base64
import copy
from dataclasses import dataclass, field
from typing import Any

DEFAULT_WEIGHTS = {"Passing": 1, "Warning": 1}


def _sorted(mapping: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if mapping is None else {k: mapping[k] for k in sorted(mapping)}


def _proxy_json(proxy: dict[str, Any]) -> dict[str, Any]:
    # ConnectProxyConfig always marshals Mode, MeshGateway and Expose.
    out: dict[str, Any] = {"Mode": "", "MeshGateway": {}, "Expose": {}}
    out.update(proxy)
    return out


@dataclass
class Node:
    name: str
    id: str
    address: str
    datacenter: str
    tagged_addresses: dict[str, str] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    create_index: int = 0
    modify_index: int = 0

    def same(self, other: Node) -> bool:
        """structs.Node.IsSame: everything but the raft indexes."""
        return (
            self.id == other.id
            and self.name.lower() == other.name.lower()
            and self.address == other.address
            and self.datacenter == other.datacenter
            and self.tagged_addresses == other.tagged_addresses
            and self.meta == other.meta
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "ID": self.id,
            "Node": self.name,
            "Address": self.address,
            "Datacenter": self.datacenter,
            "TaggedAddresses": _sorted(self.tagged_addresses),
            "Meta": _sorted(self.meta),
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }


@dataclass
class Service:
    node: str
    id: str
    name: str
    tags: list[str] | None = None
    address: str = ""
    tagged_addresses: dict[str, dict[str, Any]] = field(default_factory=dict)
    meta: dict[str, str] | None = None
    port: int = 0
    socket_path: str = ""
    weights: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    enable_tag_override: bool = False
    kind: str = ""
    proxy: dict[str, Any] = field(default_factory=dict)
    connect: dict[str, Any] = field(default_factory=dict)
    create_index: int = 0
    modify_index: int = 0
    agent: bool = False  # registered through /v1/agent/service/register

    def same(self, other: Service) -> bool:
        """structs.NodeService.IsSame (nil and empty slices/maps differ, as in Go)."""
        keys = (
            "id",
            "name",
            "tags",
            "address",
            "tagged_addresses",
            "meta",
            "port",
            "socket_path",
            "weights",
            "enable_tag_override",
            "kind",
            "proxy",
            "connect",
        )
        return all(getattr(self, k) == getattr(other, k) for k in keys) and (
            (self.tags is None) == (other.tags is None) and (self.meta is None) == (other.meta is None)
        )

    def clone(self) -> Service:
        return copy.deepcopy(self)

    def node_service_json(self) -> dict[str, Any]:
        """The ``Service`` object of /v1/health/service (structs.NodeService)."""
        out: dict[str, Any] = {}
        if self.kind:
            out["Kind"] = self.kind
        out.update({"ID": self.id, "Service": self.name, "Tags": list(self.tags or []), "Address": self.address})
        if self.tagged_addresses:
            out["TaggedAddresses"] = _sorted(self.tagged_addresses)
        out["Meta"] = _sorted(self.meta)
        if self.port:
            out["Port"] = self.port
        if self.socket_path:
            out["SocketPath"] = self.socket_path
        out.update(
            {
                "Weights": dict(self.weights),
                "EnableTagOverride": self.enable_tag_override,
                "Proxy": _proxy_json(self.proxy),
                "Connect": dict(self.connect),
                "PeerName": "",
                "CreateIndex": self.create_index,
                "ModifyIndex": self.modify_index,
            }
        )
        return out

    def service_node_json(self, node: Node) -> dict[str, Any]:
        """A flat /v1/catalog/service entry (structs.ServiceNode after PartialClone)."""
        out: dict[str, Any] = {
            "ID": node.id,
            "Node": node.name,
            "Address": node.address,
            "Datacenter": node.datacenter,
            "TaggedAddresses": _sorted(node.tagged_addresses),
            "NodeMeta": _sorted(node.meta),
            "ServiceKind": self.kind,
            "ServiceID": self.id,
            "ServiceName": self.name,
            "ServiceTags": list(self.tags or []),
            "ServiceAddress": self.address,
        }
        if self.tagged_addresses:
            out["ServiceTaggedAddresses"] = _sorted(self.tagged_addresses)
        out.update(
            {
                "ServiceWeights": dict(self.weights),
                "ServiceMeta": _sorted(self.meta or {}),
                "ServicePort": self.port,
                "ServiceSocketPath": self.socket_path,
                "ServiceEnableTagOverride": self.enable_tag_override,
                "ServiceProxy": _proxy_json(self.proxy),
                "ServiceConnect": dict(self.connect),
                "ServiceLocality": None,
                "CreateIndex": self.create_index,
                "ModifyIndex": self.modify_index,
            }
        )
        return out

    def agent_json(self, datacenter: str) -> dict[str, Any]:
        """An api.AgentService as /v1/agent/services shows it (local state: no raft indexes)."""
        out: dict[str, Any] = {}
        if self.kind:
            out["Kind"] = self.kind
        out.update(
            {
                "ID": self.id,
                "Service": self.name,
                "Tags": list(self.tags or []),
                "Meta": _sorted(self.meta or {}),
                "Port": self.port,
                "Address": self.address,
            }
        )
        if self.socket_path:
            out["SocketPath"] = self.socket_path
        if self.tagged_addresses:
            out["TaggedAddresses"] = _sorted(self.tagged_addresses)
        out.update({"Weights": dict(self.weights), "EnableTagOverride": self.enable_tag_override})
        if self.kind:
            out["Proxy"] = _proxy_json(self.proxy)
        if self.connect.get("Native"):
            out["Connect"] = {"Native": True}
        out["Datacenter"] = datacenter
        return out


@dataclass
class Check:
    node: str
    check_id: str
    name: str
    status: str = "critical"
    notes: str = ""
    output: str = ""
    service_id: str = ""
    service_name: str = ""
    service_tags: list[str] | None = None
    type: str = ""
    interval: str = ""
    timeout: str = ""
    definition: dict[str, Any] = field(default_factory=dict)
    create_index: int = 0
    modify_index: int = 0
    agent: bool = False  # owned by the local agent (TTL/HTTP/TCP runner, /v1/agent/checks)
    local_output: str | None = None  # agent-side output not yet synced (check_update_interval)

    def same(self, other: Check) -> bool:
        """structs.HealthCheck.IsSame."""
        keys = (
            "node",
            "check_id",
            "name",
            "status",
            "notes",
            "output",
            "service_id",
            "service_name",
            "service_tags",
            "definition",
        )
        return all(getattr(self, k) == getattr(other, k) for k in keys)

    def clone(self) -> Check:
        return copy.deepcopy(self)

    def to_json(self, local: bool = False) -> dict[str, Any]:
        output = self.local_output if local and self.local_output is not None else self.output
        return {
            "Node": self.node,
            "CheckID": self.check_id,
            "Name": self.name,
            "Status": self.status,
            "Notes": self.notes,
            "Output": output,
            "ServiceID": self.service_id,
            "ServiceName": self.service_name,
            "ServiceTags": list(self.service_tags or []),
            "Type": self.type,
            "Interval": self.interval,
            "Timeout": self.timeout,
            "ExposedPort": 0,
            "Definition": dict(self.definition),
            # The agent's local copy carries no raft indexes.
            "CreateIndex": 0 if local else self.create_index,
            "ModifyIndex": 0 if local else self.modify_index,
        }


@dataclass
class KVEntry:
    key: str
    value: bytes | None
    flags: int = 0
    create_index: int = 0
    modify_index: int = 0
    lock_index: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "LockIndex": self.lock_index,
            "Key": self.key,
            "Flags": self.flags,
            "Value": None if self.value is None else base64.b64encode(self.value).decode("ascii"),
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }
