"""IPv6 instances carry real traffic in both modes: `[addr]:port` in upstream.conf, an
IPv6 peer set by the Lua balancer."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from syncer.devconsul.server import DevConsul
from syncer.testing.backends import BackendFarm
from syncer.testing.consul import ConsulWriter
from syncer.testing.wait import wait_until
from tests.conftest import StartAgent
from tests.stack import BOTH_MODES, Stack


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
@pytest.mark.parametrize("stack", BOTH_MODES, indirect=True)
def test_ipv6_instances_serve_traffic(
    stack: Stack, dev_consul: DevConsul, consul: ConsulWriter, start_agent: StartAgent, tmp_path: Path
) -> None:
    with BackendFarm(tmp_path / "v6", ["v6a", "v6b"], ipv6=True) as farm:
        for name in ("v6a", "v6b"):
            # Consul may hold the address in any spelling; nginx gets the compressed form.
            consul.register("web", name, farm.ports[name], address="0:0:0:0:0:0:0:1")
        start_agent(stack.agent_args(dev_consul.address))
        wait_until(lambda: stack.served({"v6a", "v6b"}), timeout=15, message="traffic over IPv6")
        if stack.mode == "reload":
            text = stack.upstream_conf.read_text()
            assert f"server [::1]:{farm.ports['v6a']};" in text
        else:
            servers = stack.admin("GET", "/upstreams/web").json()["servers"]
            assert {s["address"] for s in servers} == {"::1"}
