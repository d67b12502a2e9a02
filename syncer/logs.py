"""structlog set-up: JSON lines when stdout is not a terminal, key=value on a terminal.

Two redaction processors run before any renderer, whoever logged what: a value under a
key that names a secret is replaced, and so is the exact value of every secret the
configuration resolved (the Consul token, its basic-auth password, the admin token)
wherever it appears in any field: an error text that quotes a header, a formatted
exception, a nested structure.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

_SECRET_WORDS = ("token", "secret", "password", "authorization")
REDACTED = "<redacted>"
_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Never print ``value`` again, in any log line (config calls this for every token)."""
    if value:
        with _lock:
            _secrets.add(value)


def scrub(value: Any, secrets: frozenset[str] | None = None) -> Any:
    """``value`` with every registered secret replaced, looking inside containers; other
    objects are turned into text only when their text holds a secret."""
    found = secrets if secrets is not None else frozenset(_secrets)
    if not found:
        return value
    if isinstance(value, str):
        for secret in sorted(found, key=len, reverse=True):  # longest first: one may contain another
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {scrub(k, found): scrub(v, found) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub(v, found) for v in value]
    text = str(value)
    if any(secret in text or secret in repr(value) for secret in found):
        return scrub(text, found)
    return value


def redact_values(_logger: object, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    secrets = frozenset(_secrets)
    if secrets:
        for key in list(event):
            event[key] = scrub(event[key], secrets)
    return event


def redact(_logger: object, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if any(word in key.lower() for word in _SECRET_WORDS) and not key.endswith("_file"):
            event[key] = "<redacted>"
    return event


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if use_json
        else structlog.processors.KeyValueRenderer(key_order=["timestamp", "level", "event"], drop_missing=True)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            redact_values,  # after format_exc_info: the exception's text is a field by then
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
