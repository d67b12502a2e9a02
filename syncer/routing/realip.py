"""Which client address the gray lists see: the connection's, or the realip module's.

``connection``: ``$remote_addr`` as the TCP peer. ``x-forwarded-for``: the realip module
takes the last address in X-Forwarded-For that is not a trusted proxy
(``real_ip_recursive on``), and only when the connection itself comes from a trusted
proxy. ``proxy-protocol``: the address a trusted proxy sent in the PROXY protocol header
(the listen socket needs ``proxy_protocol``). A header from any other peer is ignored.
Both modes read ``$remote_addr`` afterwards (geo and Lua), so they agree.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Literal

ClientAddress = Literal["connection", "x-forwarded-for", "proxy-protocol"]
CLIENT_ADDRESS_CHOICES: tuple[ClientAddress, ...] = ("connection", "x-forwarded-for", "proxy-protocol")


def trusted_networks(values: Sequence[str]) -> tuple[str, ...]:
    """Trusted proxies as normalized CIDRs; anything else is refused with the value."""
    out = []
    for value in values:
        try:
            out.append(str(ipaddress.ip_network(value, strict=True)))
        except ValueError as exc:
            raise ValueError(f"trusted proxy {value!r}: {exc}") from None
    return tuple(out)


def realip_lines(mode: ClientAddress, trusted: Sequence[str]) -> list[str]:
    """server-level directives for ``mode`` (empty for the connection's address)."""
    if mode == "connection":
        return []
    networks = trusted_networks(trusted)
    if not networks:
        raise ValueError(f"client address {mode!r} needs at least one trusted proxy (set_real_ip_from)")
    lines = [f"set_real_ip_from {n};" for n in networks]
    if mode == "x-forwarded-for":
        lines += ["real_ip_header X-Forwarded-For;", "real_ip_recursive on;"]
    else:
        lines += ["real_ip_header proxy_protocol;"]
    return lines
