"""Addresses and networks as plain integers: what 10,000-entry gray lists need to parse,
flatten, render and push in milliseconds (``ipaddress`` objects cost ~20x more).

Text goes in and out through ``socket.inet_pton``/``inet_ntop`` (C, strict: no leading
zeros, no zone ids) with ``ipaddress`` semantics for what is accepted.
"""

from __future__ import annotations

import socket
from typing import NamedTuple

BITS = {4: 32, 6: 128}
_FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}
_MAPPED = 0xFFFF  # ::ffff:0:0/96, shifted right by 32


class Net(NamedTuple):
    """A CIDR as the inclusive integer range it covers."""

    version: int
    first: int
    last: int
    prefix: int

    def __str__(self) -> str:
        return f"{text(self.version, self.first)}/{self.prefix}"


def text(version: int, value: int) -> str:
    return socket.inet_ntop(_FAMILY[version], value.to_bytes(BITS[version] // 8, "big"))


def parse_address(value: str) -> tuple[int, int] | None:
    """(version, integer) of an address literal, or None. IPv4-mapped IPv6 reads as IPv4
    (nginx's geo and the Lua matcher do the same)."""
    version = 6 if ":" in value else 4
    try:
        packed = socket.inet_pton(_FAMILY[version], value)
    except (OSError, ValueError):
        return None
    number = int.from_bytes(packed, "big")
    if version == 6 and number >> 32 == _MAPPED:
        return 4, number & 0xFFFFFFFF
    return version, number


def parse_network(value: str) -> Net:
    """A strict CIDR or single address; ``ValueError`` says why not."""
    address, slash, length = value.partition("/")
    if "%" in address:
        raise ValueError("zone ids are not supported")
    version = 6 if ":" in address else 4
    try:
        packed = socket.inet_pton(_FAMILY[version], address)
    except (OSError, ValueError):
        raise ValueError("not an IPv4 or IPv6 address") from None
    bits = BITS[version]
    if not slash:
        prefix = bits
    elif length.isdigit() and len(length) <= 3 and int(length) <= bits:
        prefix = int(length)
    else:
        raise ValueError(f"prefix length must be 0-{bits}")
    number = int.from_bytes(packed, "big")
    host = (1 << (bits - prefix)) - 1
    if number & host:
        raise ValueError(f"has host bits set (the network is {text(version, number & ~host)}/{prefix})")
    if version == 6 and number >> 32 == _MAPPED and prefix >= 96:
        raise ValueError("write IPv4-mapped addresses as IPv4")
    return Net(version, number, number | host, prefix)


def cidrs(version: int, first: int, last: int) -> list[str]:
    """The fewest CIDRs covering first..last exactly (largest aligned block at each step)."""
    bits = BITS[version]
    out: list[str] = []
    while first <= last:
        size = (first & -first).bit_length() - 1 if first else bits  # alignment of first
        span = (last - first + 1).bit_length() - 1  # largest block that fits
        block = min(size, span)
        out.append(f"{text(version, first)}/{bits - block}")
        first += 1 << block
    return out
