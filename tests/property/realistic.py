"""Data shaped like a real cluster's, for the tests that feed it through syncer.

Two kinds:

- ``ui_mock_health_answer``: a ``/v1/health/service/<name>`` answer in the shape of the
  Consul UI's own API double (hashicorp/consul ui/packages/consul-ui/mock-api/v1/health/
  service/_): Node with TaggedAddresses and a Meta value that is empty, Service with
  Weights, Connect, Proxy, ``Meta.consul-dashboard-url`` holding a URL with ``{{Service}}``
  and ``Meta.external-source`` often ``""`` (Consul itself sets it), hacker-noun tags,
  and long check Notes/Output. Built deterministically here (seeded), not copied.
- ``REGISTRATIONS``: what operators put in tags and Meta through the agent API, within
  Consul's limits (64 Meta keys, keys up to 128 characters of [A-Za-z0-9_-], values up
  to 512 characters): Traefik and Fabio tags, URLs and JSON, non-ASCII text, empty
  values, and a full house of 64 keys of 512 characters.
"""

from __future__ import annotations

import json
import random
from typing import Any

NOUNS = ("bandwidth", "pixel", "firewall", "protocol", "matrix", "circuit", "sensor", "array", "bus", "capacitor")
EXTERNAL_SOURCES = ("consul", "nomad", "terraform", "kubernetes", "aws", "")
TRAEFIK_RULE = "traefik.http.routers.web.rule=Host(`example.com`)"
FABIO_ROUTE = "urlprefix-/api strip=/api"


def _ip(rng: random.Random) -> str:
    return f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def ui_mock_health_answer(service: str, count: int = 48, seed: int = 7) -> list[dict[str, Any]]:
    """``count`` healthy instances of ``service`` in the UI mock's shape, every one valid
    for nginx (address, port, weights) and most carrying tags/Meta nginx must never see."""
    rng = random.Random(seed)
    entries = []
    for i in range(count):
        ip = _ip(rng)
        tags = [rng.choice(NOUNS) for _ in range(rng.randrange(1, 5))]
        if i % 4 == 0:
            tags.append(TRAEFIK_RULE)
        if i % 5 == 0:
            tags.append(FABIO_ROUTE)
        if i % 7 == 0:
            tags.append("team payments")  # a tag with a space
        meta: dict[str, str] | None = None
        if rng.randrange(10) > 1:
            meta = {
                "consul-dashboard-url": f"https://{rng.choice(NOUNS)}.example.com/?id={{{{Service}}}}",
                "external-source": rng.choice(EXTERNAL_SOURCES),
            }
        entries.append(
            {
                "Node": {
                    "ID": f"7037e928-d9e8-3b58-4712-{i:012d}",
                    "Node": f"node-{i}",
                    "Address": ip,
                    "Datacenter": "dc1",
                    "TaggedAddresses": {"lan": ip, "wan": ip},
                    "Meta": {f"{service}-network-segment": ""},
                    "CreateIndex": 5,
                    "ModifyIndex": 6,
                },
                "Service": {
                    "ID": f"{service}-with-id" if i == 0 else f"{service}-{i}",
                    "Service": service,
                    "Tags": tags,
                    "Weights": {"Passing": 1, "Warning": 1},
                    "Meta": meta,
                    "Address": ip,
                    "Port": 20000 + i,
                    "Connect": {},
                    "Proxy": {"Expose": {}, "MeshGateway": {}, "Mode": "", "TransparentProxy": ""},
                    "ProxyDestination": "",
                    "EnableTagOverride": False,
                    "CreateIndex": 5,
                    "ModifyIndex": 5,
                },
                "Checks": [
                    {
                        "Node": f"node-{i}",
                        "CheckID": f"{rng.choice(NOUNS)}Health",
                        "Name": f"{rng.choice(NOUNS)} Status",
                        "Type": rng.choice(("ttl", "http", "tcp", "grpc")),
                        "Status": "passing",
                        "Notes": "Quia et iusto. Rerum {deserunt} ad; aut $sit #est.",
                        "Output": f"fe80::1 https://user:p4ss@{rng.choice(NOUNS)}.example.com Mozilla/5.0 (X11)",
                        "ServiceID": f"{service}-{i}",
                        "ServiceName": service,
                        "ServiceTags": ["Tag"],
                        "Definition": {},
                        "CreateIndex": 5,
                        "ModifyIndex": 5,
                    }
                    for _ in range(3)
                ],
            }
        )
    return entries


def full_meta() -> dict[str, str]:
    """Consul's limits, filled: 64 keys, each value 512 characters of ordinary text."""
    return {f"k{i:02d}-{'x' * 120}": (f"value {i} " * 80)[:512] for i in range(64)}


# (tags, meta) pairs an operator's tooling registers. None of these reach nginx with the
# packaged template; each must leave its instance in the upstream.
REGISTRATIONS: dict[str, tuple[list[str], dict[str, str]]] = {
    "traefik": (
        [TRAEFIK_RULE, "traefik.http.routers.web.entrypoints=websecure", "traefik.enable=true"],
        {"dashboard-url": "https://grafana.example.com/d/abc?var-service={{Service}}&from=now-1h"},
    ),
    "fabio": ([FABIO_ROUTE, "urlprefix-example.com:443/ proto=https"], {"external-source": ""}),
    "json": (
        ["v1"],
        {
            "config": json.dumps({"routes": [{"path": "/api", "timeout": "5s"}], "retries": 3}),
            "description": "Zahlungsdienst für Bestellungen — 支付服务",
            "empty": "",
        },
    ),
    "full": (["a b", "#comment", "$var", "semi;colon", 'quote"d', "back\\slash", ""], full_meta()),
}
