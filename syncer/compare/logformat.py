"""The replay log: the nginx ``log_format`` that ``syncer nginx-example`` prints, and the
parser ``syncer compare`` reads it with (plus the mirror log and a plain request list).

One JSON object per line, written by nginx with ``escape=json``::

    {"v":"syncer-replay-1","id":"$request_id","ts":"$time_iso8601","method":"$request_method",
     "uri":"$request_uri","host":"$host","status":"$status","rt":"$request_time",
     "urt":"$upstream_response_time","ust":"$upstream_status","clen":"$content_length",
     "h":{"accept":"$http_accept",...},"body":"$request_body"}

``body`` is present only when the format was printed with a body bound. nginx keeps
``$request_body`` only when the body fitted ``client_body_buffer_size``; a request with a
``Content-Length`` but no logged body is marked ``body_missing`` and never replayed.
The mirror log (``"v":"syncer-mirror-1"``) has the same id, the subrequest's status and
the candidate's latency. Every line is untrusted input: anything malformed is rejected
with its line number and reason, the rest is used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

REPLAY_VERSION = "syncer-replay-1"
MIRROR_VERSION = "syncer-mirror-1"
DEFAULT_HEADERS = ("accept", "accept-language", "content-type", "user-agent")

HEADER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,63}")
METHOD = re.compile(r"[A-Z][A-Z0-9_-]{0,19}")
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
HOST = re.compile(r"[a-z0-9._:\[\]-]{0,255}")
MAX_URI = 8192
MAX_HEADER_VALUE = 8192
MAX_LINE = 4 * 1024 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Hop-by-hop and framing headers are the replaying client's business, never the log's.
REFUSED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "trailer", "upgrade"}
)

Kind = Literal["replay", "mirror"]


class LogFormatError(ValueError):
    """An option that cannot go into the printed ``log_format``."""


@dataclass(frozen=True)
class LogEntry:
    """One logged (or listed) request, and what nginx saw of its answer."""

    kind: Kind
    id: str
    method: str
    uri: str
    line: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    body_missing: bool = False
    status: int | None = None
    """nginx's ``$status``: for a mirror entry, the subrequest's (504 when it timed out)."""
    upstream_time: float | None = None
    """The last attempt's ``$upstream_response_time`` in seconds; None when no upstream answered."""
    host: str = ""
    """nginx's ``$host`` (lower case): which service the request was for; "" when not logged."""


@dataclass
class Parsed:
    entries: list[LogEntry] = field(default_factory=list)
    rejected: int = 0
    examples: list[str] = field(default_factory=list)  # "line N: reason", the first few

    def reject(self, line: int, reason: str) -> None:
        self.rejected += 1
        if len(self.examples) < 20:
            self.examples.append(f"line {line}: {reason}")


def check_header_names(names: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for name in names:
        if not HEADER_NAME.fullmatch(name):
            raise LogFormatError(f"header name {name!r}: letters, digits and '-' only, starting with a letter")
        if name.lower() in REFUSED_HEADERS:
            raise LogFormatError(f"header name {name!r}: framing/hop-by-hop headers are not replayed")
        if name.lower() not in out:
            out.append(name.lower())
    return tuple(out)


def replay_log_format(
    headers: Iterable[str] = DEFAULT_HEADERS, with_body: bool = False, name: str = "syncer_replay"
) -> str:
    """The ``log_format`` directive nginx needs to write the replay log."""
    names = check_header_names(headers)
    header_fields = ",".join(f'"{h}":"$http_{h.replace("-", "_")}"' for h in names)
    parts = [
        f'"v":"{REPLAY_VERSION}"',
        '"id":"$request_id"',
        '"ts":"$time_iso8601"',
        '"method":"$request_method"',
        '"uri":"$request_uri"',
        '"host":"$host"',
        '"status":"$status"',
        '"rt":"$request_time"',
        '"urt":"$upstream_response_time"',
        '"ust":"$upstream_status"',
        '"clen":"$content_length"',
        f'"h":{{{header_fields}}}',
    ]
    if with_body:
        parts.append('"body":"$request_body"')
    return f"log_format {name} escape=json '{{{','.join(parts)}}}';"


def mirror_log_format(name: str = "syncer_mirror") -> str:
    """The ``log_format`` for the mirror subrequest: same ``$request_id`` as the original."""
    parts = [
        f'"v":"{MIRROR_VERSION}"',
        '"id":"$request_id"',
        '"ts":"$time_iso8601"',
        '"method":"$request_method"',
        '"uri":"$request_uri"',
        '"status":"$status"',
        '"rt":"$request_time"',
        '"urt":"$upstream_response_time"',
        '"ust":"$upstream_status"',
    ]
    return f"log_format {name} escape=json '{{{','.join(parts)}}}';"


# --- parsing -------------------------------------------------------------------------


class _Bad(ValueError):
    pass


def _text(obj: dict[str, Any], key: str, required: bool = True) -> str:
    value = obj.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise _Bad(f"{key!r} must be a string, got {type(value).__name__}")
    return value


def _method(value: str) -> str:
    if not METHOD.fullmatch(value):
        raise _Bad(f"method {value[:40]!r} is not an HTTP method token")
    return value


def _uri(value: str) -> str:
    if not value.startswith("/"):
        raise _Bad(f"uri {value[:80]!r} must start with '/'")
    if len(value) > MAX_URI:
        raise _Bad(f"uri longer than {MAX_URI} characters")
    if " " in value or _CONTROL.search(value):
        raise _Bad(f"uri {value[:80]!r} contains a space or a control character")
    return value


def _status(value: str) -> int | None:
    if value in ("", "-"):
        return None
    # a mirror that timed out logs "504"; several attempts log "502, 200": keep the last
    last = value.rsplit(",", 1)[-1].strip()
    if not last.isdigit() or not 100 <= int(last) <= 999:
        raise _Bad(f"status {value[:40]!r} is not an HTTP status")
    return int(last)


def _seconds(value: str) -> float | None:
    if value in ("", "-"):
        return None
    last = value.replace(":", ",").rsplit(",", 1)[-1].strip()
    try:
        seconds = float(last)
    except ValueError:
        raise _Bad(f"latency {value[:40]!r} is not a number of seconds") from None
    if not 0 <= seconds < 86400:
        raise _Bad(f"latency {value[:40]!r} out of range")
    return seconds


def _headers(value: object) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise _Bad("'h' must be an object of header values")
    out: list[tuple[str, str]] = []
    for name, text in value.items():
        if not isinstance(name, str) or not HEADER_NAME.fullmatch(name) or name.lower() in REFUSED_HEADERS:
            raise _Bad(f"header name {str(name)[:40]!r} refused")
        if not isinstance(text, str):
            raise _Bad(f"header {name!r} must be a string")
        if len(text) > MAX_HEADER_VALUE or _CONTROL.search(text.replace("\t", " ")):
            raise _Bad(f"header {name!r} is too long or holds a control character")
        if text:  # nginx logs a missing header as "": nothing to send
            out.append((name.lower(), text))
    return tuple(out)


def _json_entry(obj: object, line: int) -> LogEntry:
    if not isinstance(obj, dict):
        raise _Bad("not a JSON object")
    version = obj.get("v")
    if version not in (REPLAY_VERSION, MIRROR_VERSION):
        raise _Bad(f"unknown format version {str(version)[:40]!r}")
    request_id = _text(obj, "id")
    if not REQUEST_ID.fullmatch(request_id):
        raise _Bad(f"request id {request_id[:40]!r} refused")
    method = _method(_text(obj, "method"))
    uri = _uri(_text(obj, "uri"))
    status = _status(_text(obj, "status", required=False))
    upstream_time = _seconds(_text(obj, "urt", required=False))
    if version == MIRROR_VERSION:
        return LogEntry("mirror", request_id, method, uri, line, status=status, upstream_time=upstream_time)
    clen_text = _text(obj, "clen", required=False)
    if clen_text and not clen_text.isdigit():
        raise _Bad(f"content length {clen_text[:40]!r} is not a number")
    body: bytes | None = None
    if "body" in obj:
        # escape=json passes bytes >= 0x80 through raw; surrogateescape kept them byte-exact
        body = _text(obj, "body").encode("utf-8", "surrogateescape")
    host = _text(obj, "host", required=False).lower()
    if not HOST.fullmatch(host):
        raise _Bad(f"host {host[:40]!r} is not a host name")
    content_length = int(clen_text) if clen_text else 0
    missing = content_length > 0 and (body is None or len(body) != content_length)
    return LogEntry(
        "replay",
        request_id,
        method,
        uri,
        line,
        headers=_headers(obj.get("h")),
        body=body if body else None,
        body_missing=missing,
        status=status,
        upstream_time=upstream_time,
        host=host,
    )


def _plain_entry(text: str, line: int) -> LogEntry:
    parts = text.split()
    if len(parts) == 1:
        method, uri = "GET", parts[0]
    elif len(parts) == 2:
        method, uri = parts
    else:
        raise _Bad("expected 'URI' or 'METHOD URI'")
    return LogEntry("replay", f"line-{line}", _method(method.upper()), _uri(uri), line)


def parse_lines(lines: Iterable[bytes]) -> Parsed:
    """Entries from a replay log, a mirror log, or a plain list (``URI`` or ``METHOD URI``
    per line; ``#`` comments); both kinds may be mixed in one file."""
    parsed = Parsed()
    for number, raw in enumerate(lines, start=1):
        if len(raw) > MAX_LINE:
            parsed.reject(number, f"line longer than {MAX_LINE} bytes")
            continue
        text = raw.decode("utf-8", "surrogateescape").strip()
        if not text or text.startswith("#"):
            continue
        try:
            if text.startswith("{"):
                try:
                    obj = json.loads(text)
                except ValueError as exc:
                    raise _Bad(f"not JSON: {exc}") from None
                parsed.entries.append(_json_entry(obj, number))
            else:
                parsed.entries.append(_plain_entry(text, number))
        except _Bad as exc:
            parsed.reject(number, str(exc))
    return parsed


def _lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        yield from handle


def read_log(path: Path) -> Parsed:
    return parse_lines(_lines(path))
