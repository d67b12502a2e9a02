"""The nginx under test for the DNS strategies: open-source nginx 1.22 and Consul's DNS.

Two forms, the only two that open-source nginx 1.22 has (re-resolving ``server name``
inside ``upstream {}`` and SRV lookups are NGINX Plus features):

- ``dns``: ``resolver 127.0.0.1:<dns port> valid=<N>s`` and a *variable* ``proxy_pass``.
  A variable that names no ``upstream {}`` block is resolved at request time through the
  resolver, whose cache (per worker) keeps an answer for ``valid`` (or the record's TTL
  when ``valid`` is not set). Such a request gets a one-off round-robin peer set built
  from the addresses: no upstream keep-alive connections.
- ``dns-static``: ``upstream web.service.consul { server ADDRESS:PORT; ... keepalive 32; }``,
  the addresses as ``server web.service.consul:PORT`` resolves them once when nginx
  starts (``proxy_pass http://$name`` without a port names the block: nothing is resolved). nginx
  resolves that form with the system resolver (getaddrinfo), which cannot be pointed at
  port 8600 without root; the benchmark asks dev-consul's DNS once, the way glibc's stub
  resolver does (UDP, no EDNS), and writes the addresses it got.

Both route by Host like ``syncer nginx-example``: ``web`` (the default) and ``slow``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import dns.message
import dns.query
import dns.rdatatype

from bench.ports import free_ports
from bench.stack import stop_nginx, with_status_server
from syncer.testing.nginx import NginxProcess

Variant = Literal["dns", "dns-static"]
VARIANTS: tuple[Variant, ...] = ("dns", "dns-static")
STATIC_KEEPALIVE = 32  # what syncer's reload template writes


@dataclass(frozen=True)
class Target:
    """One service as nginx addresses it: Consul DNS name and the port written in the config."""

    service: str
    port: int

    @property
    def name(self) -> str:
        return f"{self.service}.service.consul"


def resolve_once(name: str, dns_port: int) -> list[str]:
    """What a stub resolver (glibc) gets for ``name`` from the agent: a UDP query without
    EDNS, asked again over TCP when the answer comes back truncated (TC)."""
    query = dns.message.make_query(name, dns.rdatatype.A, use_edns=False)
    reply, _ = dns.query.udp_with_fallback(query, "127.0.0.1", port=dns_port, timeout=3)
    return sorted(rd.to_text() for rrset in reply.answer if rrset.rdtype == dns.rdatatype.A for rd in rrset)


def render(
    variant: Variant,
    listen_port: int,
    status_port: int,
    targets: list[Target],
    dns_port: int,
    valid: float,
    worker_processes: int,
    static_addresses: dict[str, list[str]] | None = None,
    keepalive: int = STATIC_KEEPALIVE,
) -> str:
    def value(t: Target) -> str:
        # with a port, proxy_pass resolves the name; without, it names the upstream block
        return f"{t.name}:{t.port}" if variant == "dns" else t.name

    hosts = "\n".join(f'        "{t.service}" "{value(t)}";\n        "{t.service}.*" "{value(t)}";' for t in targets)
    if variant == "dns":
        how = (
            f"    # every request resolves $dns_upstream through Consul's DNS; each worker caches\n"
            f"    # an answer for valid= (overriding the record's TTL)\n"
            f"    resolver 127.0.0.1:{dns_port} valid={valid:g}s ipv6=off;\n"
            f"    resolver_timeout 2s;\n"
        )
    else:
        blocks = []
        for t in targets:
            addresses = (static_addresses or {}).get(t.name) or []
            servers = "\n".join(f"        server {a}:{t.port};" for a in addresses) or (
                "        server 127.0.0.1:65535 down;"
            )
            idle = f"\n        keepalive {keepalive};" if keepalive else ""
            blocks.append(
                f"    # server {t.name}:{t.port}; resolved once, when nginx started\n"
                f"    upstream {t.name} {{\n{servers}{idle}\n    }}\n"
            )
        how = "".join(blocks)
    conf = f"""# bench: written by bench/dns_proxy.py ({variant})
worker_processes {worker_processes};
worker_rlimit_nofile 16384;
pid logs/nginx.pid;
error_log logs/error.log error;

events {{
    worker_connections 4096;
}}

http {{
    default_type application/octet-stream;
    access_log off;
    client_body_temp_path temp_client_body;
    proxy_temp_path temp_proxy;
    fastcgi_temp_path temp_fastcgi;
    uwsgi_temp_path temp_uwsgi;
    scgi_temp_path temp_scgi;

{how}
    map $host $dns_upstream {{
        hostnames;
        default "{value(targets[0])}";
{hosts}
    }}

    server {{
        listen 127.0.0.1:{listen_port};

        location / {{
            proxy_pass http://$dns_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_connect_timeout 2s;
            proxy_next_upstream error timeout http_502 http_503 http_504;
            proxy_next_upstream_tries 3;
        }}
    }}
}}
"""
    return with_status_server(conf, status_port)


class DnsProxy:
    """One nginx under test for a DNS variant (the same attributes the samplers need as ``Proxy``)."""

    def __init__(
        self,
        variant: Variant,
        workdir: Path,
        targets: list[Target],
        dns_port: int,
        valid: float,
        worker_processes: int,
        label: str | None = None,
        keepalive: int = STATIC_KEEPALIVE,
    ) -> None:
        """``keepalive``: dns-static's idle connections per worker (0: none, like the ``dns`` form)."""
        self.variant = variant
        self.keepalive = keepalive
        self.targets = targets
        self.dns_port = dns_port
        self.valid = valid
        self.worker_processes = worker_processes
        self.port, self.status_port = free_ports(2)
        self.prefix = workdir / f"nginx-{label or variant}"
        self.static_addresses: dict[str, list[str]] = {}
        self.nginx = NginxProcess(self.prefix)
        self.conf_text = ""

    def start(self) -> DnsProxy:
        if self.variant == "dns-static":
            self.static_addresses = {t.name: resolve_once(t.name, self.dns_port) for t in self.targets}
        self.conf_text = render(
            self.variant,
            self.port,
            self.status_port,
            self.targets,
            self.dns_port,
            self.valid,
            self.worker_processes,
            self.static_addresses,
            self.keepalive,
        )
        self.nginx.conf_path.write_text(self.conf_text)
        self.nginx.start(wait_port=self.port)
        return self

    def stop(self, grace: float = 5.0) -> None:
        stop_nginx(self.nginx, grace)

    def refused_connects(self) -> int:
        """``connect() failed (111: Connection refused)`` lines nginx logged so far."""
        return self.nginx.error_log().count("(111: Connection refused) while connecting to upstream")
