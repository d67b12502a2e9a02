"""Rules that keep untrusted values from becoming nginx syntax.

Every value that can reach upstream.conf or the dynamic endpoint passes one of these
checks. Each failure is a ``Invalid`` carrying the value and the reason, so a log line
can say exactly what was refused and why.
"""

from __future__ import annotations

import ipaddress
import re

from syncer import limits

# Limits shared with the Lua endpoint come from its contract file (lua/syncer/limits.json).
_LIMITS = limits.load()

# Characters that end or open an nginx token, start a variable or a comment, or quote.
_NGINX_SYNTAX = re.compile(r"""[\s;{}'"$#\\`]""")
_PRINTABLE_ASCII = re.compile(r"^[\x21-\x7e]*$")
UPSTREAM_NAME = re.compile(rf"^(?=.{{1,{_LIMITS.name_max}}}$){_LIMITS.name.pattern}$")
_HOSTNAME_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_DURATION = re.compile(r"^(\d{1,6})(ms|s|m|h)?$")
MAX_VALUE_LENGTH = 512
MAX_WEIGHT = int(_LIMITS.weight.high)
MAX_FAILS = int(_LIMITS.max_fails.high)
MAX_CONNS = int(_LIMITS.max_conns.high)
MAX_FAIL_TIMEOUT = int(_LIMITS.fail_timeout.high)


class Invalid(ValueError):
    """A value refused with a reason: ``str(exc)`` reads ``<what> <value!r>: <reason>``."""

    def __init__(self, what: str, value: object, reason: str) -> None:
        self.what = what
        self.value = value
        self.reason = reason
        super().__init__(f"{what} {value!r}: {reason}")


def safe_token(what: str, value: object) -> str:
    """A string nginx would read as one plain token: printable ASCII, no syntax."""
    if not isinstance(value, str):
        raise Invalid(what, value, "must be a string")
    if not value:
        raise Invalid(what, value, "must not be empty")
    if len(value) > MAX_VALUE_LENGTH:
        raise Invalid(what, value[:40] + "...", f"longer than {MAX_VALUE_LENGTH} characters")
    match = _NGINX_SYNTAX.search(value)
    if match:
        raise Invalid(what, value, f"contains {match.group()!r}, which is nginx syntax")
    if not _PRINTABLE_ASCII.match(value):
        raise Invalid(what, value, "contains non-printable or non-ASCII characters")
    return value


def upstream_name(value: object) -> str:
    if not isinstance(value, str) or not UPSTREAM_NAME.match(value):
        raise Invalid(
            "service name",
            value,
            "must be 1-128 characters of letters, digits, '_', '.', '-', starting with a letter or digit",
        )
    return value


def port(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid("port", value, "must be an integer")
    if value not in _LIMITS.port:
        raise Invalid("port", value, f"must be between {_LIMITS.port.low:g} and {_LIMITS.port.high:g}")
    return value


def address(value: object, *, allow_hostname: bool) -> str:
    """An IP literal, or a DNS name when the sink can resolve names (reload mode)."""
    if not isinstance(value, str) or not value:
        raise Invalid("address", value, "must be a non-empty string")
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]  # accept "[::1]"; the model keeps IPv6 unbracketed
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
            raise Invalid("address", value, "IPv6 zone ids are not supported by nginx upstreams")
        if ip.is_unspecified:
            raise Invalid("address", value, "the unspecified address cannot be connected to")
        return ip.compressed
    if "%" in value or ":" in value:
        raise Invalid("address", value, "is not a valid IP address")
    if not allow_hostname:
        raise Invalid("address", value, "must be an IP address (the dynamic endpoint cannot resolve names)")
    name = value[:-1] if value.endswith(".") else value
    if len(name) > 253 or not all(_HOSTNAME_LABEL.match(label) for label in name.split(".")):
        raise Invalid("address", value, "is neither an IP address nor a valid DNS name")
    if name.replace(".", "").isdigit():
        raise Invalid("address", value, "looks like an IPv4 address but is not a valid one")
    return name.lower()


def weight(value: object, what: str = "weight") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(what, value, "must be an integer")
    if not 1 <= value <= MAX_WEIGHT:
        raise Invalid(what, value, f"must be between 1 and {MAX_WEIGHT}")
    return value


def bounded_int(what: str, value: object, low: int, high: int) -> int:
    """An integer given as a number or a decimal string (Consul Meta values are strings)."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(what, value, "must be a whole number")
    if not low <= value <= high:
        raise Invalid(what, value, f"must be between {low} and {high}")
    return value


def duration_seconds(what: str, value: object, high: int = 86400) -> int:
    """``30``, ``30s``, ``2m``, ``1h`` or ``1500ms`` (rounded up to whole seconds)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise Invalid(what, value, "must be a duration such as 10s or 2m")
    match = _DURATION.match(value.strip())
    if not match:
        raise Invalid(what, value, "must be a duration such as 10s or 2m")
    number, unit = int(match.group(1)), match.group(2) or "s"
    seconds = {"ms": -(-number // 1000), "s": number, "m": number * 60, "h": number * 3600}[unit]
    if seconds > high:
        raise Invalid(what, value, f"must be at most {high} seconds")
    return seconds


def boolean(what: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise Invalid(what, value, "must be true or false")
