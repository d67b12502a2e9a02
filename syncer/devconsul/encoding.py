"""JSON in and out the way Go's encoding/json does it for Consul."""

from __future__ import annotations

import json
from typing import Any

# Go's json.Marshal escapes these inside strings (HTML safety); they can only
# appear inside strings in JSON text, so a plain replace is exact.
_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def go_json(obj: Any, pretty: bool = False) -> bytes:
    """Compact like json.Marshal, or MarshalIndent with four spaces plus a newline (``?pretty``)."""
    if pretty:
        text = json.dumps(obj, indent=4, ensure_ascii=False) + "\n"
    else:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    for raw, escaped in _GO_ESCAPES.items():
        if raw in text:
            text = text.replace(raw, escaped)
    return text.encode("utf-8")


class DecodeError(ValueError):
    """A body that Go's json.Decoder would reject; the message mimics Go's."""


_PY_TO_GO = {
    "Expecting value": "looking for beginning of value",
    "Expecting property name enclosed in double quotes": "looking for beginning of object key string",
    "Expecting ':' delimiter": "after object key",
    "Expecting ',' delimiter": "after object key:value pair",
}


def decode_body(body: bytes) -> Any:
    """Decode the first JSON value of ``body`` like json.NewDecoder(r).Decode (trailing data ignored)."""
    text = body.decode("utf-8", errors="replace")
    stripped = text.lstrip(" \t\r\n")
    if not stripped:
        raise DecodeError("EOF")
    try:
        value, _end = json.JSONDecoder().raw_decode(stripped)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(stripped):
            raise DecodeError("unexpected EOF") from None
        context = _PY_TO_GO.get(exc.msg, "looking for beginning of value")
        char = stripped[exc.pos]
        raise DecodeError(f"invalid character {char!r} {context}") from None
    return value
