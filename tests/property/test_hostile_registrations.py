"""The properties end to end: instances registered in the dev Consul with nginx syntax in
a value that reaches nginx (address, nginx_* Meta) or with impossible ports are rejected
with a logged reason and counted; nothing of them reaches upstream.conf or the endpoint;
the good instance is served. (Tags and other Meta never reach nginx: they ride along, see
test_realistic_data.py.)"""

from __future__ import annotations

import pytest

from syncer.devconsul.server import DevConsul
from syncer.testing.backends import BackendFarm
from syncer.testing.consul import ConsulWriter
from tests.conftest import StartAgent
from tests.stack import BOTH_MODES, Stack, events, metric, metrics_url, register, scrape, wait_event

HOSTILE: list[tuple[str, dict[str, object], str]] = [
    # (instance id, registration fields, the field the rejection names)
    ("inject-address", {"address": "127.0.0.1:1; } server { listen 1; include /etc/passwd"}, "address"),
    ("brace-address", {"address": "evil}"}, "address"),
    ("zone-address", {"address": "fe80::1%eth0"}, "address"),
    ("meta-param", {"meta": {"nginx_max_fails": "1 down"}}, "Service.Meta.nginx_max_fails"),
]


@pytest.mark.parametrize("stack", BOTH_MODES, indirect=True)
def test_hostile_instances_are_rejected_and_never_reach_nginx(
    stack: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm, start_agent: StartAgent
) -> None:
    register(consul, backends, "b1")
    for instance, fields, _ in HOSTILE:
        port = int(fields.pop("port", backends.ports["b2"]))  # type: ignore[call-overload]
        consul.register("web", instance, port, **fields)  # type: ignore[arg-type]
    consul.register("web", "port-zero", 0)
    agent = start_agent(stack.agent_args(dev_consul.address))
    stack.wait_serving(backends, {"b1"})

    rejected = wait_event(agent, "instance rejected", count=len(HOSTILE) + 1)
    by_instance = {r["instance"]: r for r in rejected}
    for instance, _, field in HOSTILE:
        assert by_instance[instance]["field"] == field
        assert by_instance[instance]["reason"]
    assert by_instance["port-zero"]["field"] == "port"
    assert metric(scrape(metrics_url(agent)), "syncer_rejected_instances_total", service="web") == len(HOSTILE) + 1

    assert stack.ports() == {backends.ports["b1"]}
    if stack.mode == "reload":
        held = "".join(line for line in stack.upstream_conf.read_text().splitlines() if not line.startswith("#"))
    else:
        held = stack.admin("GET", "/upstreams").text
    for fragment in ("passwd", "listen", "evil", "eth0", "1 down", str(backends.ports["b2"])):
        assert fragment not in held
    assert not events(agent, "sync failed; last good state stays in force")
