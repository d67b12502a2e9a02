"""dev-consul's DNS interface, queried with dnspython over real UDP and TCP sockets.

Each test registers instances over the HTTP API and asks the DNS port what a Consul agent
would answer (agent/dns.go): which instances, which records, which TTLs, which rcode and
SOA, and how UDP answers are cut.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
import requests

from syncer.devconsul import DevConsul, cli
from syncer.devconsul.dns_answer import DnsConfig
from syncer.testing.consul import ConsulWriter
from syncer.testing.ports import free_port
from syncer.testing.wait import wait_until

Query = Callable[..., dns.message.Message]


def _start(**kwargs: Any) -> DevConsul:
    return DevConsul(port=0, seed=1, dns_listen=("127.0.0.1", 0), **kwargs).start()


@pytest.fixture
def dev() -> Iterator[DevConsul]:
    server = _start()
    yield server
    server.stop()


@pytest.fixture
def writer(dev: DevConsul) -> Iterator[ConsulWriter]:
    w = ConsulWriter(dev.url)
    yield w
    w.close()


def ask(
    dev: DevConsul, name: str, rdtype: str = "A", tcp: bool = False, payload: int | None = None
) -> dns.message.Message:
    assert dev.dns is not None
    query = dns.message.make_query(name, rdtype, use_edns=payload is not None, payload=payload or 512)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, "127.0.0.1", port=dev.dns.port, timeout=3)


def records(msg: dns.message.Message, rdtype: str, section: str = "answer") -> list[str]:
    wanted = dns.rdatatype.from_text(rdtype)
    rrsets: list[dns.rrset.RRset] = getattr(msg, section)
    return sorted(rd.to_text() for rrset in rrsets if rrset.rdtype == wanted for rd in rrset)


def ttls(msg: dns.message.Message) -> set[int]:
    return {rrset.ttl for rrset in msg.answer}


def test_service_a_records_are_the_healthy_instances(dev: DevConsul, writer: ConsulWriter) -> None:
    """Passing and warning instances answer; critical and maintenance ones do not."""
    writer.register("web", "ok", 8080, address="10.0.0.1")
    writer.register("web", "warn", 8080, address="10.0.0.2", status="warning")
    writer.register("web", "down", 8080, address="10.0.0.3", status="critical")
    writer.register("web", "maint", 8080, address="10.0.0.4")
    requests.put(f"{dev.url}/v1/agent/service/maintenance/maint?enable=true", timeout=5).raise_for_status()

    msg = ask(dev, "web.service.consul")
    assert msg.rcode() == dns.rcode.NOERROR
    assert msg.flags & dns.flags.AA
    assert not msg.flags & dns.flags.RA
    assert records(msg, "A") == ["10.0.0.1", "10.0.0.2"]
    assert msg.answer[0].name == dns.name.from_text("web.service.consul")
    assert ttls(msg) == {0}

    writer.check("service:down", "passing")
    writer.deregister("ok")
    assert records(ask(dev, "WEB.service.consul"), "A") == ["10.0.0.2", "10.0.0.3"]


def test_only_passing_drops_warning_instances() -> None:
    dev = _start(dns_config=DnsConfig(only_passing=True))
    try:
        writer = ConsulWriter(dev.url)
        writer.register("web", "ok", 8080, address="10.0.0.1")
        writer.register("web", "warn", 8080, address="10.0.0.2", status="warning")
        assert records(ask(dev, "web.service.consul"), "A") == ["10.0.0.1"]
    finally:
        dev.stop()


def test_a_critical_node_check_hides_every_service_on_the_node(dev: DevConsul) -> None:
    body = {
        "Node": "n2",
        "Address": "10.9.0.2",
        "Service": {"ID": "web-n2", "Service": "web", "Port": 80},
        "Check": {"CheckID": "node-health", "Name": "node", "Status": "critical"},
    }
    requests.put(f"{dev.url}/v1/catalog/register", json=body, timeout=5).raise_for_status()
    assert ask(dev, "web.service.consul").rcode() == dns.rcode.NXDOMAIN

    body["Check"] = {"CheckID": "node-health", "Name": "node", "Status": "passing"}
    requests.put(f"{dev.url}/v1/catalog/register", json=body, timeout=5).raise_for_status()
    # no service address: the node's address answers
    assert records(ask(dev, "web.service.consul"), "A") == ["10.9.0.2"]


def test_tag_lookups_standard_and_rfc2782(dev: DevConsul, writer: ConsulWriter) -> None:
    writer.register("web", "v1", 8081, address="10.0.0.1", tags=["v1", "Primary"])
    writer.register("web", "v2", 8082, address="10.0.0.2", tags=["v2"])

    assert records(ask(dev, "v1.web.service.consul"), "A") == ["10.0.0.1"]
    assert records(ask(dev, "primary.web.service.consul"), "A") == ["10.0.0.1"]  # tags match case-insensitively
    assert records(ask(dev, "_web._v2.service.consul", "SRV"), "SRV") == ["1 1 8082 0a000002.addr.dc1.consul."]
    # "_tcp" is the protocol, not a tag; the ".service" label is optional in RFC 2782 names
    assert len(records(ask(dev, "_web._tcp.service.consul", "SRV"), "SRV")) == 2
    assert len(records(ask(dev, "_web._tcp.consul", "SRV"), "SRV")) == 2
    assert ask(dev, "v3.web.service.consul").rcode() == dns.rcode.NXDOMAIN


def test_srv_carries_ports_weights_and_addresses(dev: DevConsul, writer: ConsulWriter) -> None:
    """A service with its own IP targets ``<hex>.addr``; one without targets its node."""
    writer.register("api", "own-ip", 9001, address="192.0.2.10", weights={"Passing": 5, "Warning": 2})
    writer.register("api", "warned", 9002, address="192.0.2.11", status="warning", weights={"Passing": 5, "Warning": 2})
    requests.put(
        f"{dev.url}/v1/agent/service/register",
        json={"Name": "api", "ID": "node-ip", "Port": 9003, "Check": {"TTL": "10m", "Status": "passing"}},
        timeout=5,
    ).raise_for_status()

    msg = ask(dev, "api.service.consul", "SRV")
    assert records(msg, "SRV") == [
        "1 1 9003 dev-node.node.dc1.consul.",
        "1 2 9002 c000020b.addr.dc1.consul.",
        "1 5 9001 c000020a.addr.dc1.consul.",
    ]
    extra = {rrset.name.to_text(): [rd.to_text() for rd in rrset] for rrset in msg.additional if rrset.rdtype == 1}
    assert extra == {
        "c000020a.addr.dc1.consul.": ["192.0.2.10"],
        "c000020b.addr.dc1.consul.": ["192.0.2.11"],
        "dev-node.node.dc1.consul.": ["127.0.0.1"],
    }
    # node meta goes along as TXT for the node target (dns_config.enable_additional_node_meta_txt)
    assert '"consul-version=1.20.0"' in records(msg, "TXT", "additional")


def test_ttls_follow_dns_config() -> None:
    config = DnsConfig(service_ttl={"*": 5, "web*": 10, "web": 30}, node_ttl=7)
    dev = _start(dns_config=config)
    try:
        writer = ConsulWriter(dev.url)
        for name in ("web", "webapp", "db"):
            writer.register(name, name, 80, address="10.0.0.1")
        assert ttls(ask(dev, "web.service.consul")) == {30}  # exact name first
        assert ttls(ask(dev, "webapp.service.consul")) == {10}  # then the longest prefix
        assert ttls(ask(dev, "db.service.consul")) == {5}
        assert ttls(ask(dev, "web.service.consul", "SRV")) == {30}
        assert ttls(ask(dev, "dev-node.node.consul")) == {7}
    finally:
        dev.stop()


def test_nxdomain_and_nodata_carry_the_soa(dev: DevConsul, writer: ConsulWriter) -> None:
    writer.register("web", "web1", 8080, address="10.0.0.1")
    writer.register("gone", "gone1", 8080, address="10.0.0.2", status="critical")

    for name in ("nope.service.consul", "gone.service.consul", "nobody.node.consul", "web.service.dc2.consul"):
        msg = ask(dev, name)
        assert msg.rcode() == dns.rcode.NXDOMAIN, name
        assert msg.flags & dns.flags.AA
        assert not msg.answer
        (soa,) = msg.authority
        assert soa.name == dns.name.from_text("consul")
        assert soa.ttl == 0
        rd = soa[0]
        assert (rd.mname.to_text(), rd.rname.to_text()) == ("ns.consul.", "hostmaster.consul.")
        assert (rd.refresh, rd.retry, rd.expire, rd.minimum) == (3600, 600, 86400, 0)

    # the name exists but has no IPv6 address: NOERROR, no answer, SOA (RFC 2308 NODATA)
    msg = ask(dev, "web.service.consul", "AAAA")
    assert msg.rcode() == dns.rcode.NOERROR
    assert not msg.answer
    assert [r.rdtype for r in msg.authority] == [dns.rdatatype.SOA]

    # the same datacenter named explicitly is fine
    assert records(ask(dev, "web.service.dc1.consul"), "A") == ["10.0.0.1"]
    assert records(ask(dev, "web.service.dc1.dc.consul"), "A") == ["10.0.0.1"]


def test_soa_and_ns_queries(dev: DevConsul) -> None:
    msg = ask(dev, "consul", "SOA")
    assert records(msg, "SOA")[0].startswith("ns.consul. hostmaster.consul. ")
    assert records(msg, "NS", "authority") == ["dev-node.node.dc1.consul."]
    assert records(msg, "A", "additional") == ["127.0.0.1"]
    assert records(ask(dev, "consul", "NS"), "NS") == ["dev-node.node.dc1.consul."]


def test_udp_answers_are_cut_like_consul_and_tcp_has_them_all() -> None:
    """Without EDNS at most udp_answer_limit (3) answers, no TC bit unless enable_truncate."""
    for truncate in (False, True):
        dev = _start(dns_config=DnsConfig(enable_truncate=truncate))
        try:
            writer = ConsulWriter(dev.url)
            for i in range(10):
                writer.register("web", f"web{i}", 8080, address=f"10.0.1.{i}")
            udp = ask(dev, "web.service.consul")
            assert len(records(udp, "A")) == 3
            assert bool(udp.flags & dns.flags.TC) is truncate
            assert len(records(ask(dev, "web.service.consul", tcp=True), "A")) == 10
            assert len(records(ask(dev, "web.service.consul", payload=4096), "A")) == 10
            # the three are a random pick: over a few queries more than three instances show up
            seen = {a for _ in range(20) for a in records(ask(dev, "web.service.consul"), "A")}
            assert len(seen) > 3
        finally:
            dev.stop()


def test_udp_answers_fit_512_bytes() -> None:
    dev = _start(dns_config=DnsConfig(udp_answer_limit=8))
    try:
        writer = ConsulWriter(dev.url)
        for i in range(12):
            writer.register("web", f"web{i}", 8080 + i, address=f"2001:db8::{i + 1}")
        msg = ask(dev, "web.service.consul", "SRV")
        assert len(msg.to_wire()) <= 512
        srv = records(msg, "SRV")
        assert 1 <= len(srv) <= 8
        # every SRV left has its address in the additional section, and nothing else is there
        targets = sorted(r.split()[-1] for r in srv)
        assert sorted(rr.name.to_text() for rr in msg.additional if rr.rdtype == dns.rdatatype.AAAA) == targets
    finally:
        dev.stop()


def test_ipv6_and_hostname_addresses(dev: DevConsul, writer: ConsulWriter) -> None:
    writer.register("v6", "v6a", 80, address="2001:db8::5")
    writer.register("ext", "ext1", 443, address="example.org")
    assert records(ask(dev, "v6.service.consul", "AAAA"), "AAAA") == ["2001:db8::5"]
    assert ask(dev, "v6.service.consul", "A").answer == []
    assert records(ask(dev, "ext.service.consul"), "CNAME") == ["example.org."]


def test_node_lookup(dev: DevConsul) -> None:
    msg = ask(dev, "dev-node.node.consul")
    assert records(msg, "A") == ["127.0.0.1"]
    assert '"consul-version=1.20.0"' in records(msg, "TXT", "additional")
    assert records(ask(dev, "Dev-Node.node.dc1.consul"), "A") == ["127.0.0.1"]
    assert '"consul-version=1.20.0"' in records(ask(dev, "dev-node.node.consul", "TXT"), "TXT")
    assert records(ask(dev, "7f000001.addr.consul"), "A") == ["127.0.0.1"]
    assert records(ask(dev, "1.0.0.127.in-addr.arpa", "PTR"), "PTR") == ["dev-node.node.dc1.consul."]


def test_other_zones_are_refused_and_garbage_is_ignored(dev: DevConsul, writer: ConsulWriter) -> None:
    assert ask(dev, "example.com").rcode() == dns.rcode.REFUSED
    assert dev.dns is not None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"\x00\x01garbage", ("127.0.0.1", dev.dns.port))
    writer.register("web", "web1", 8080, address="10.0.0.1")
    assert records(ask(dev, "web.service.consul"), "A") == ["10.0.0.1"]


def test_tcp_connection_carries_several_queries(dev: DevConsul, writer: ConsulWriter) -> None:
    writer.register("web", "web1", 8080, address="10.0.0.1")
    assert dev.dns is not None
    with socket.create_connection(("127.0.0.1", dev.dns.port), timeout=3) as sock:
        for name in ("web.service.consul", "dev-node.node.consul"):
            dns.query.send_tcp(sock, dns.message.make_query(name, "A"), None)
            reply, _ = dns.query.receive_tcp(sock, None)
            assert reply.rcode() == dns.rcode.NOERROR
            assert reply.answer


def test_acl_default_deny_hides_everything_from_dns() -> None:
    """DNS queries carry no token: with ACLs on, the anonymous token reads nothing."""
    token = "0b9a1c3e-2f4d-4e5f-8a6b-7c8d9e0f1a2b"
    dev = _start(acl_tokens=[token])
    try:
        writer = ConsulWriter(dev.url, token=token)
        writer.register("web", "web1", 8080, address="10.0.0.1")
        assert ask(dev, "web.service.consul").rcode() == dns.rcode.NXDOMAIN
        assert ask(dev, "dev-node.node.consul").rcode() == dns.rcode.NXDOMAIN
    finally:
        dev.stop()


def test_cli_dns_listen_option() -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert parser.parse_args([]).dns_listen == ("127.0.0.1", 8600)
    assert parser.parse_args(["--dns-listen", ""]).dns_listen is None
    assert parser.parse_args(["--dns-listen", "[::1]:8653"]).dns_listen == ("::1", 8653)
    with pytest.raises(SystemExit):
        parser.parse_args(["--dns-listen", "8600"])
    assert parser.parse_args(["--dns-service-ttl", "30"]).dns_service_ttl == 30
    for bad in ("-1", "soon"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--dns-node-ttl", bad])


def test_cli_process_answers_dns(tmp_path: object) -> None:
    http_port, dns_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "DEV_CONSUL_ACL_TOKENS_FILE"}
    args = [sys.executable, "-m", "syncer.devconsul", "--listen", f"127.0.0.1:{http_port}"]
    args += ["--dns-listen", f"127.0.0.1:{dns_port}", "--dns-service-ttl", "3", "--log-level", "WARNING"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        url = f"http://127.0.0.1:{http_port}"
        wait_until(lambda: requests.get(f"{url}/v1/status/leader", timeout=1).ok, timeout=15, message="dev-consul up")
        ConsulWriter(url).register("web", "web1", 8080, address="10.0.0.7")
        query = dns.message.make_query("web.service.consul", "A")
        reply = dns.query.udp(query, "127.0.0.1", port=dns_port, timeout=3)
        assert records(reply, "A") == ["10.0.0.7"]
        assert ttls(reply) == {3}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stdout is not None
        assert f"DNS on 127.0.0.1:{dns_port}".encode() in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
