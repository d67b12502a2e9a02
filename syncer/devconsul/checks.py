"""HTTP and TCP probes with the status rules and output text of Consul's agent/checks."""

from __future__ import annotations

import socket
import ssl
import urllib.error
import urllib.request
from http.client import responses

from syncer.devconsul.decode import CheckDef

DEFAULT_TIMEOUT = 10.0
OUTPUT_MAX = 4096


def run_probe(cdef: CheckDef) -> tuple[str, str]:
    if cdef.kind == "http":
        return _http(cdef)
    if cdef.kind == "tcp":
        return _tcp(cdef)
    return "critical", f"check type {cdef.kind!r} is not run by dev-consul"


def _status_for(code: int) -> str:
    # CheckHTTP: 2xx passing, 429 warning, anything else critical.
    if 200 <= code < 300:
        return "passing"
    if code == 429:
        return "warning"
    return "critical"


def _http(cdef: CheckDef) -> tuple[str, str]:
    method = (cdef.method or "GET").upper()
    data = cdef.body.encode() if cdef.body else None
    request = urllib.request.Request(cdef.http, data=data, method=method)  # noqa: S310 - the check's own URL
    request.add_header("User-Agent", "Consul Health Check")
    request.add_header("Accept", "text/plain, text/*, */*")
    for name, values in cdef.header.items():
        for value in values:
            request.add_header(name, value)
    context = ssl.create_default_context()
    if cdef.tls_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    timeout = cdef.timeout or DEFAULT_TIMEOUT
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:  # noqa: S310
            code, body = resp.status, resp.read(OUTPUT_MAX)
    except urllib.error.HTTPError as exc:
        code, body = exc.code, exc.read(OUTPUT_MAX)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return "critical", f'{method.title()} "{cdef.http}": {reason}'
    text = body.decode("utf-8", errors="replace")
    return _status_for(code), f"HTTP {method} {cdef.http}: {code} {responses.get(code, '')} Output: {text}"


def _tcp(cdef: CheckDef) -> tuple[str, str]:
    host, _, port = cdef.tcp.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=cdef.timeout or DEFAULT_TIMEOUT):
            return "passing", f"TCP connect {cdef.tcp}: Success"
    except (OSError, ValueError) as exc:
        return "critical", f"dial tcp {cdef.tcp}: {exc}"
