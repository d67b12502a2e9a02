"""Which selectors each endpoint's ``?filter=`` accepts (the field tables of Consul's API docs)."""

from __future__ import annotations

from syncer.devconsul.bexpr import Field

STR, INT, BOOL = Field("string"), Field("int"), Field("bool")
TAGS, MAP = Field("strings"), Field("map")
WEIGHTS = Field("struct", {"Passing": INT, "Warning": INT})
SERVICE_ADDRESSES = Field("map_struct", {"Address": STR, "Port": INT})
PROXY = Field("struct", {
    "DestinationServiceName": STR, "DestinationServiceID": STR, "LocalServiceAddress": STR,
    "LocalServicePort": INT, "LocalServiceSocketPath": STR, "Mode": STR,
    "MeshGateway": Field("struct", {"Mode": STR}),
})  # fmt: skip
CONNECT = Field("struct", {"Native": BOOL})

_NODE = {
    "ID": STR, "Node": STR, "Address": STR, "Datacenter": STR, "TaggedAddresses": MAP, "Meta": MAP,
    "PeerName": STR,
}  # fmt: skip
_CHECK = {
    "Node": STR, "CheckID": STR, "Name": STR, "Status": STR, "Notes": STR, "Output": STR, "ServiceID": STR,
    "ServiceName": STR, "ServiceTags": TAGS, "Type": STR, "Interval": STR, "Timeout": STR, "ExposedPort": INT,
    "PeerName": STR,
}  # fmt: skip

NODE = Field("struct", _NODE)
HEALTH_CHECK = Field("struct", _CHECK)
NODE_SERVICE = Field("struct", {
    "Kind": STR, "ID": STR, "Service": STR, "Tags": TAGS, "Address": STR, "TaggedAddresses": SERVICE_ADDRESSES,
    "Meta": MAP, "Port": INT, "SocketPath": STR, "Weights": WEIGHTS, "EnableTagOverride": BOOL, "Proxy": PROXY,
    "Connect": CONNECT, "PeerName": STR,
})  # fmt: skip
CHECK_SERVICE_NODE = Field("struct", {"Node": NODE, "Service": NODE_SERVICE, "Checks": Field("structs", _CHECK)})
SERVICE_NODE = Field("struct", {
    "ID": STR, "Node": STR, "Address": STR, "Datacenter": STR, "TaggedAddresses": MAP, "NodeMeta": MAP,
    "ServiceKind": STR, "ServiceID": STR, "ServiceName": STR, "ServiceTags": TAGS, "ServiceAddress": STR,
    "ServiceTaggedAddresses": SERVICE_ADDRESSES, "ServiceWeights": WEIGHTS, "ServiceMeta": MAP,
    "ServicePort": INT, "ServiceSocketPath": STR, "ServiceEnableTagOverride": BOOL, "ServiceProxy": PROXY,
    "ServiceConnect": CONNECT, "PeerName": STR,
})  # fmt: skip
AGENT_SERVICE = Field("struct", {
    "Kind": STR, "ID": STR, "Service": STR, "Tags": TAGS, "Meta": MAP, "Port": INT, "Address": STR,
    "TaggedAddresses": SERVICE_ADDRESSES, "Weights": WEIGHTS, "EnableTagOverride": BOOL, "Proxy": PROXY,
    "Connect": CONNECT, "PeerName": STR,
})  # fmt: skip
