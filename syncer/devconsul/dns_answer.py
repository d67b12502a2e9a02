"""Consul's DNS answers computed from the dev Consul's catalog (agent/dns.go, v1 DNS server).

A pure function of the query, the transport and a read-only look at the store (taken under
its lock, as every HTTP endpoint does): ``Answerer.answer(query, transport) -> response``.
The server plumbing (sockets, threads) lives in ``syncer.devconsul.dns``.

What follows Consul, rule by rule:
- names: ``[tag.]<service>.service[.<dc>[.dc]].<domain>``, RFC 2782 ``_<service>._<tag>[.service]...``
  (``_tcp`` means "no tag"), ``<node>.node[.<dc>]...``, ``<hex-ip>.addr[.<dc>]...``;
- instances whose node or service has a critical check are left out, and warning ones too
  with ``only_passing``; the rest are shuffled;
- A/AAAA (and CNAME for a hostname address) carry the asked name; SRV targets the node
  (``<node>.node.<dc>.<domain>``) or, for a service with its own IP, ``<hex>.addr.<dc>.<domain>``,
  with the address (and node meta TXT) in the additional section;
- TTLs: ``service_ttl`` (exact name, then the longest ``prefix*``), ``node_ttl``; default 0;
- nothing found: NXDOMAIN; found but no record of the asked type: NOERROR (NODATA); both
  carry the SOA in the authority section;
- UDP: without EDNS at most ``min(udp_answer_limit, 8)`` answers, then cut to 512 bytes (or
  the EDNS size); TC only with ``enable_truncate``; TCP: cut to 64 KiB.
"""

from __future__ import annotations

import ipaddress
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.NS import NS
from dns.rdtypes.ANY.PTR import PTR
from dns.rdtypes.ANY.SOA import SOA
from dns.rdtypes.ANY.TXT import TXT
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA
from dns.rdtypes.IN.SRV import SRV

from syncer.devconsul.model import Check, Node, Service
from syncer.devconsul.state import Store

Transport = Literal["udp", "tcp"]
IN = dns.rdataclass.IN
T = dns.rdatatype

MAX_UDP_ANSWER_LIMIT = 8  # agent/dns.go maxUDPAnswerLimit: a hard cap over udp_answer_limit
DEFAULT_UDP_SIZE = 512
MAX_UDP_DATAGRAM = 65535 - 68
MAX_TCP_SIZE = 65523


@dataclass(frozen=True)
class SOAConfig:
    refresh: int = 3600
    retry: int = 600
    expire: int = 86400
    min_ttl: int = 0


@dataclass(frozen=True)
class DnsConfig:
    """The agent's ``domain`` and ``dns_config`` block, with Consul's defaults."""

    domain: str = "consul"
    node_ttl: float = 0.0
    service_ttl: dict[str, float] = field(default_factory=dict)
    """Service name -> seconds; a key ending in ``*`` is a prefix, ``"*"`` matches every service."""
    only_passing: bool = False
    udp_answer_limit: int = 3
    a_record_limit: int = 0
    enable_truncate: bool = False
    node_meta_txt: bool = True
    soa: SOAConfig = field(default_factory=SOAConfig)

    def __post_init__(self) -> None:
        if self.udp_answer_limit <= 0:
            raise ValueError("dns_config.udp_answer_limit must be > 0")
        if self.a_record_limit < 0:
            raise ValueError("dns_config.a_record_limit must be >= 0")
        if self.node_ttl < 0 or any(v < 0 for v in self.service_ttl.values()):
            raise ValueError("DNS TTLs must be >= 0")

    def ttl_for_service(self, name: str) -> int:
        """GetTTLForService: exact key first, then the longest ``prefix*`` key."""
        if name in self.service_ttl:
            return int(self.service_ttl[name])
        best: tuple[int, float] | None = None
        for key, ttl in self.service_ttl.items():
            if key.endswith("*") and name.startswith(key[:-1]) and (best is None or len(key) > best[0]):
                best = (len(key), ttl)
        return int(best[1]) if best else 0


class NameNotFound(Exception):
    """NXDOMAIN (Consul's errNameNotFound)."""


class NoData(Exception):
    """NOERROR with no answer (Consul's errNoData)."""


@dataclass(frozen=True)
class Instance:
    """One health entry as the DNS interface needs it: copied out under the store's lock."""

    node: Node
    service: Service
    checks: tuple[Check, ...]


@dataclass
class _Reply:
    answer: list[tuple[dns.name.Name, int, dns.rdata.Rdata]] = field(default_factory=list)
    extra: list[tuple[dns.name.Name, int, dns.rdata.Rdata]] = field(default_factory=list)
    authority: list[tuple[dns.name.Name, int, dns.rdata.Rdata]] = field(default_factory=list)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _rd(kind: Callable[..., dns.rdata.Rdata], *args: Any) -> dns.rdata.Rdata:
    """One record of class IN (dnspython's record constructors carry no type hints)."""
    return kind(IN, *args)


def _hostname(text: str) -> dns.name.Name | None:
    """A registered address that is not an IP, as a DNS name (None when it cannot be one)."""
    try:
        return dns.name.from_text(text.rstrip(".") + ".")
    except (dns.exception.DNSException, UnicodeError):
        return None


def _address_record(qtype: int, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> dns.rdata.Rdata | None:
    """makeARecord: which record an address gives for the asked type (None: none)."""
    if ip.version == 4:
        if qtype in (T.SRV, T.A, T.ANY, T.NS, T.TXT):
            return _rd(A, T.A, str(ip))
        return None
    if qtype in (T.SRV, T.AAAA, T.ANY, T.NS, T.TXT):
        return _rd(AAAA, T.AAAA, str(ip))
    return None


def _rfc1464(key: str, value: str) -> str:
    """encodeKVasRFC1464: backquote ` and = in the key, and its leading/trailing spaces."""
    key = key.replace("`", "``").replace("=", "`=")
    stripped = key.lstrip(" ")
    key = "` " * (len(key) - len(stripped)) + stripped
    stripped = key.rstrip(" ")
    key = stripped + "` " * (len(key) - len(stripped))
    return key + "=" + value.replace("`", "``")


def _aggregated_status(statuses: list[str]) -> str:
    """api.HealthChecks.AggregatedStatus (maintenance checks are critical)."""
    if any(s == "critical" for s in statuses):
        return "critical"
    if any(s == "warning" for s in statuses):
        return "warning"
    if all(s == "passing" for s in statuses):
        return "passing"
    return ""


class Answerer:
    """Builds the response to one query from the store (read-only)."""

    def __init__(
        self,
        store: Store,
        config: DnsConfig,
        datacenter: str,
        *,
        acl_denies: Callable[[], bool] = lambda: False,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.config = config
        self.datacenter = datacenter
        self.domain = dns.name.from_text(config.domain)
        # DNS queries carry no token: they run as the anonymous token, which dev-consul's
        # default-deny ACLs allow nothing (Consul then filters every result away).
        self._acl_denies = acl_denies
        self._rng = rng or random.Random()
        self._clock = clock

    # Entry point -------------------------------------------------------------------------
    def answer(self, query: dns.message.Message, transport: Transport) -> dns.message.Message:
        # EDNS is echoed with the client's own UDP size (setEDNS)
        response = dns.message.make_response(query, our_payload=query.payload if query.edns >= 0 else 1232)
        response.flags |= dns.flags.AA
        response.flags &= ~dns.flags.RA  # no recursors
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        qname, qtype = question.name, question.rdtype
        reply = _Reply()
        rcode: dns.rcode.Rcode = dns.rcode.NOERROR
        if qname.is_subdomain(dns.name.from_text("arpa")):
            rcode = self._ptr(qname, qtype, reply)
        elif not qname.is_subdomain(self.domain):
            # no recursors and no handler for other zones: miekg/dns's ServeMux refuses
            response.flags &= ~dns.flags.AA
            response.set_rcode(dns.rcode.REFUSED)
            return response
        elif qtype == T.SOA:
            reply.answer.append(self._soa())
            self._nameservers(reply, into_answer=False)
        elif qtype == T.NS:
            self._nameservers(reply, into_answer=True)
        elif qtype == T.AXFR:
            rcode = dns.rcode.NOTIMP
        else:
            try:
                self._dispatch(qname, qtype, reply)
            except NameNotFound:
                rcode = dns.rcode.NXDOMAIN
                reply.authority.append(self._soa())
            except NoData:
                reply.authority.append(self._soa())
        response.set_rcode(rcode)
        self._trim(query, reply, transport, response)
        return response

    # Names ----------------------------------------------------------------------------------
    def _dispatch(self, qname: dns.name.Name, qtype: int, reply: _Reply) -> None:
        labels = [label.decode("ascii", "replace").lower() for label in qname.relativize(self.domain).labels]
        kind, parts, suffixes = "", [], []
        for i in range(len(labels) - 1, -1, -1):
            if labels[i] in ("service", "node", "addr", "connect", "ingress", "virtual", "query"):
                kind, parts, suffixes = labels[i], labels[:i], labels[i + 1 :]
                break
            if qtype == T.SRV and labels[i].startswith("_"):
                # the "service" label is optional in RFC 2782 SRV names
                kind, parts, suffixes = "service", labels[: i + 1], labels[i + 1 :]
                break
        if kind == "service" and parts:
            self._check_datacenter(suffixes)
            if len(parts) == 2 and parts[0].startswith("_") and parts[1].startswith("_"):
                tag = parts[1][1:]
                self._service(qname, qtype, parts[0][1:], "" if tag == "tcp" else tag, reply)
            else:
                self._service(qname, qtype, parts[-1], ".".join(parts[:-1]), reply)
            return
        if kind == "node" and parts:
            self._check_datacenter(suffixes)
            self._node(qname, qtype, ".".join(parts), reply)
            return
        if kind == "addr" and len(parts) == 1:
            self._addr(qname, qtype, parts[0], reply)
            return
        # connect/ingress/virtual/query lookups need Connect or prepared queries: dev-consul has neither
        raise NameNotFound()

    def _check_datacenter(self, suffixes: list[str]) -> None:
        """parseLocality: ``<dc>`` or ``<dc>.dc``; another datacenter has no path from here."""
        if len(suffixes) > 2 or (len(suffixes) == 2 and suffixes[1] != "dc"):
            raise NameNotFound()
        if suffixes and suffixes[0] != self.datacenter.lower():
            raise NameNotFound()

    # Lookups --------------------------------------------------------------------------------------
    def _instances(self, service: str, tag: str) -> list[Instance]:
        lowered, tag = service.lower(), tag.lower()
        with self.store.lock:
            found = []
            for svc in self.store.services.values():
                if svc.name.lower() != lowered or (tag and tag not in {t.lower() for t in svc.tags or []}):
                    continue
                checks = tuple(
                    c
                    for (node, _), c in self.store.checks.items()
                    if node == svc.node and (not c.service_id or c.service_id == svc.id)
                )
                found.append(Instance(self.store.nodes[svc.node], svc.clone(), checks))
        if self._acl_denies():
            return []
        return sorted(found, key=lambda i: (i.node.name, i.service.id))

    def _healthy(self, instances: list[Instance]) -> list[Instance]:
        """CheckServiceNodes.Filter(only_passing)."""
        keep = []
        for inst in instances:
            statuses = [c.status for c in inst.checks]
            if "critical" in statuses or (self.config.only_passing and any(s != "passing" for s in statuses)):
                continue
            keep.append(inst)
        return keep

    def _service(self, qname: dns.name.Name, qtype: int, service: str, tag: str, reply: _Reply) -> None:
        nodes = self._healthy(self._instances(service, tag))
        if not nodes:
            raise NameNotFound()
        self._rng.shuffle(nodes)
        ttl = self.config.ttl_for_service(service)
        if qtype == T.SRV:
            self._srv_records(qname, nodes, ttl, reply)
        else:
            self._address_records(qname, qtype, nodes, ttl, reply)
        if not reply.answer:
            raise NoData()

    def _address_records(
        self, qname: dns.name.Name, qtype: int, nodes: list[Instance], ttl: int, reply: _Reply
    ) -> None:
        """addServiceNodeRecordsToMessage: one record per distinct address, CNAMEs only as a fallback."""
        seen: set[str] = set()
        cname: list[tuple[dns.name.Name, int, dns.rdata.Rdata]] = []
        count = 0
        for inst in nodes:
            address = inst.service.address or inst.node.address
            ip = _ip(address)
            if ip is None:
                target = _hostname(address)
                record: dns.rdata.Rdata | None = None if target is None else _rd(CNAME, T.CNAME, target)
            else:
                record = _address_record(qtype, ip)
            if record is None or record.to_text() in seen:
                continue
            seen.add(record.to_text())
            if isinstance(record, CNAME):
                cname = cname or [(qname, ttl, record)]
                continue
            reply.answer.append((qname, ttl, record))
            count += 1
            if count == self.config.a_record_limit:
                return
        if not reply.answer and cname:
            reply.answer.extend(cname)

    def _srv_records(self, qname: dns.name.Name, nodes: list[Instance], ttl: int, reply: _Reply) -> None:
        """addServiceSRVRecordsToMessage: target the node, or ``<hex>.addr`` for a service's own IP."""
        seen: set[tuple[str, str, int]] = set()
        for inst in nodes:
            svc, node = inst.service, inst.node
            key = (node.name, svc.address, svc.port)
            if key in seen:
                continue
            seen.add(key)
            weight = self._weight(inst)
            address = svc.address or node.address
            ip = _ip(address)
            if ip is None:
                host = _hostname(address)
                if host is not None:
                    reply.answer.append((qname, ttl, _rd(SRV, T.SRV, 1, weight, svc.port, host)))
                continue
            if svc.address:
                target = dns.name.from_text(f"{ip.packed.hex()}.addr.{self.datacenter}", self.domain)
            else:
                target = self._node_fqdn(node.name)
            reply.answer.append((qname, ttl, _rd(SRV, T.SRV, 1, weight, svc.port, target)))
            record = _address_record(T.SRV, ip)
            if record is not None:
                reply.extra.append((target, ttl, record))
            if self.config.node_meta_txt:
                reply.extra.extend((self._node_fqdn(node.name), ttl, txt) for txt in self._meta_txt(node))

    def _weight(self, inst: Instance) -> int:
        """findWeight: Weights.Passing or Weights.Warning by the aggregated status."""
        status = _aggregated_status(
            [c.status for c in inst.checks if c.service_name == inst.service.name or not c.service_name]
        )
        weights = inst.service.weights
        if status == "warning":
            return int(weights.get("Warning", 1))
        if status == "passing":
            return int(weights.get("Passing", 1))
        return 0 if status == "critical" else 1

    def _node(self, qname: dns.name.Name, qtype: int, name: str, reply: _Reply) -> None:
        if qtype not in (T.ANY, T.A, T.AAAA, T.TXT):
            return  # Consul answers NOERROR, empty, without an SOA
        with self.store.lock:
            node = next((n for n in self.store.nodes.values() if n.name.lower() == name), None)
        if node is None or self._acl_denies():
            raise NameNotFound()
        ttl = int(self.config.node_ttl)
        if qtype != T.TXT:
            ip = _ip(node.address)
            host = _hostname(node.address) if ip is None else None
            if host is not None:
                reply.answer.append((qname, ttl, _rd(CNAME, T.CNAME, host)))
            elif ip is not None:
                record = _address_record(qtype, ip)
                if record is not None:
                    reply.answer.append((qname, ttl, record))
        if self.config.node_meta_txt or qtype in (T.TXT, T.ANY):
            target = reply.answer if qtype in (T.TXT, T.ANY) else reply.extra
            target.extend((qname, ttl, txt) for txt in self._meta_txt(node))

    def _addr(self, qname: dns.name.Name, qtype: int, label: str, reply: _Reply) -> None:
        try:
            raw = bytes.fromhex(label)
        except ValueError:
            raise NameNotFound() from None
        if len(raw) not in (4, 16):
            raise NameNotFound()
        ip = ipaddress.ip_address(raw)
        ttl = int(self.config.node_ttl)
        record: dns.rdata.Rdata = _rd(A, T.A, str(ip)) if ip.version == 4 else _rd(AAAA, T.AAAA, str(ip))
        wanted = T.A if ip.version == 4 else T.AAAA
        (reply.answer if qtype in (wanted, T.ANY) else reply.extra).append((qname, ttl, record))

    def _ptr(self, qname: dns.name.Name, qtype: int, reply: _Reply) -> dns.rcode.Rcode:
        """handlePtr: a node with that address, else a service with that address."""
        if qtype == T.SOA:
            reply.authority.append(self._soa())  # handlePtr adds it to the authority section
        with self.store.lock:
            nodes = list(self.store.nodes.values())
            services = list(self.store.services.values())
        if not self._acl_denies():
            for node in nodes:
                ip = _ip(node.address)
                if ip is not None and dns.name.from_text(ip.reverse_pointer) == qname:
                    target = self._node_fqdn(node.name)
                    reply.answer.append((qname, 0, _rd(PTR, T.PTR, target)))
                    return dns.rcode.NOERROR
            for svc in services:
                ip = _ip(svc.address)
                if ip is not None and dns.name.from_text(ip.reverse_pointer) == qname:
                    target = dns.name.from_text(f"{svc.name}.service.{self.datacenter}", self.domain)
                    reply.answer.append((qname, 0, _rd(PTR, T.PTR, target)))
                    return dns.rcode.NOERROR
        reply.authority.append(self._soa())
        return dns.rcode.NXDOMAIN

    # Records --------------------------------------------------------------------------------------
    def _node_fqdn(self, node: str) -> dns.name.Name:
        return dns.name.from_text(f"{node}.node.{self.datacenter}", self.domain)

    def _meta_txt(self, node: Node) -> list[dns.rdata.Rdata]:
        out: list[dns.rdata.Rdata] = []
        for key, value in node.meta.items():
            text = value if key.lower().startswith("rfc1035-") else _rfc1464(key, value)
            out.append(_rd(TXT, T.TXT, [text.encode()]))
        return out

    def _soa(self) -> tuple[dns.name.Name, int, dns.rdata.Rdata]:
        soa = self.config.soa
        serial = int(self._clock()) & 0xFFFFFFFF
        record = _rd(
            SOA,
            T.SOA,
            dns.name.from_text("ns", self.domain),
            dns.name.from_text("hostmaster", self.domain),
            serial,
            soa.refresh,
            soa.retry,
            soa.expire,
            soa.min_ttl,
        )
        return self.domain, soa.min_ttl, record

    def _nameservers(self, reply: _Reply, into_answer: bool) -> None:
        """getNameserversAndNodeRecord: up to three nodes of the ``consul`` service, shuffled."""
        servers = self._healthy(self._instances("consul", ""))
        self._rng.shuffle(servers)
        target = reply.answer if into_answer else reply.authority
        ttl = int(self.config.node_ttl)
        for inst in servers[:3]:
            fqdn = self._node_fqdn(inst.node.name)
            target.append((self.domain, ttl, _rd(NS, T.NS, fqdn)))
            ip = _ip(inst.node.address)
            record = _address_record(T.ANY, ip) if ip is not None else None
            if record is not None:
                reply.extra.append((fqdn, ttl, record))

    # Size limits ------------------------------------------------------------------------------------
    def _trim(self, query: dns.message.Message, reply: _Reply, transport: Transport, out: dns.message.Message) -> None:
        """trimUDPResponse / trimTCPResponse, then write the sections into ``out``."""
        answers, authority = list(reply.answer), list(reply.authority)
        qtype = query.question[0].rdtype if query.question else T.A
        if transport == "udp":
            max_size = DEFAULT_UDP_SIZE
            if query.edns >= 0 and query.payload > max_size:
                max_size = min(query.payload, MAX_UDP_DATAGRAM)
            limit = min(MAX_UDP_ANSWER_LIMIT, self.config.udp_answer_limit)
            if max_size == DEFAULT_UDP_SIZE and len(answers) > limit:
                answers = answers[:limit]
            max_size -= 8  # the UDP header
        else:
            max_size = MAX_TCP_SIZE
            answers = answers[: 1024 if qtype == T.SRV else 4096]
        trimmed = len(answers) < len(reply.answer)
        while True:
            extra = self._extra_for(answers, reply.extra) if len(answers) < len(reply.answer) else reply.extra
            self._fill(out, answers, authority, extra)
            if len(answers) <= 1 or self._size(out) <= max_size:
                break
            authority = []
            answers = answers[:-1]
            trimmed = True
        if trimmed and transport == "udp" and self.config.enable_truncate:
            out.flags |= dns.flags.TC

    @staticmethod
    def _extra_for(
        answers: list[tuple[dns.name.Name, int, dns.rdata.Rdata]],
        extra: list[tuple[dns.name.Name, int, dns.rdata.Rdata]],
    ) -> list[tuple[dns.name.Name, int, dns.rdata.Rdata]]:
        """syncExtra (after a cut): keep only the additional records the remaining SRV answers point at."""
        if not any(isinstance(rd, SRV) for _, _, rd in answers):
            return extra
        targets = {rd.target for _, _, rd in answers if isinstance(rd, SRV)}
        return [e for e in extra if e[0] in targets]

    @staticmethod
    def _fill(
        out: dns.message.Message,
        answers: list[tuple[dns.name.Name, int, dns.rdata.Rdata]],
        authority: list[tuple[dns.name.Name, int, dns.rdata.Rdata]],
        extra: list[tuple[dns.name.Name, int, dns.rdata.Rdata]],
    ) -> None:
        for section, records in ((out.answer, answers), (out.authority, authority), (out.additional, extra)):
            section.clear()
            for name, ttl, rdata in records:
                rrset = next((r for r in section if r.name == name and r.rdtype == rdata.rdtype), None)
                if rrset is None:
                    rrset = dns.rrset.RRset(name, IN, rdata.rdtype)
                    section.append(rrset)
                rrset.add(rdata, ttl)

    @staticmethod
    def _size(message: dns.message.Message) -> int:
        try:
            return len(message.to_wire())
        except dns.exception.TooBig:
            return MAX_UDP_DATAGRAM + 1
