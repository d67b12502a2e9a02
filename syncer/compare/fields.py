"""One answer → a flat map of comparable fields, so differences can be counted per field.

``status``, ``header.<name>`` for the selected headers, and the body: a JSON body is
canonicalised (key order does not matter) and flattened to one field per leaf, e.g.
``body.items[].price``; array indices are kept for the comparison but folded in the field
name, so noise in ``items[3].ts`` and ``items[7].ts`` counts as one noisy field. Any other
body is one field holding its length and SHA-256. ``--ignore`` patterns (shell globs on
the field name) drop fields before comparison.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MAX_DEPTH = 32
MAX_LEAVES = 5000


@dataclass(frozen=True)
class Captured:
    """What one target answered (or ``error`` when it did not)."""

    status: int | None
    headers: Mapping[str, str]
    body: bytes
    truncated: bool = False
    error: str | None = None


@dataclass(frozen=True)
class FieldValue:
    name: str  # field name with array indices folded: the unit noise is counted in
    value: str  # canonical text of the value


Flat = dict[str, FieldValue]  # exact path (indices kept) -> value


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _flatten(value: object, exact: str, folded: str, out: Flat, depth: int) -> None:
    if len(out) >= MAX_LEAVES:
        out["body.…"] = FieldValue("body.…", "more than 5000 leaves; the rest not compared")
        return
    if depth > MAX_DEPTH:
        out[exact] = FieldValue(folded, json.dumps(value, sort_keys=True)[:200])
        return
    if isinstance(value, dict):
        if not value:
            out[exact] = FieldValue(folded, "{}")
        for key in sorted(value):
            _flatten(value[key], f"{exact}.{key}", f"{folded}.{key}", out, depth + 1)
    elif isinstance(value, list):
        out[f"{exact}[#]"] = FieldValue(f"{folded}[#]", str(len(value)))
        for index, item in enumerate(value):
            _flatten(item, f"{exact}[{index}]", f"{folded}[]", out, depth + 1)
    else:
        out[exact] = FieldValue(folded, json.dumps(value))


def _digest(body: bytes, truncated: bool) -> str:
    size = f"more than {len(body)}" if truncated else str(len(body))
    return f"{size} bytes sha256:{hashlib.sha256(body).hexdigest()[:16]}"


def flatten(answer: Captured, headers: Iterable[str], ignore: Iterable[str] = ()) -> Flat:
    """The comparable fields of ``answer``; ``headers`` are lower-case names to compare."""
    out: Flat = {}
    if answer.error is not None:
        out["error"] = FieldValue("error", answer.error)
        return out
    out["status"] = FieldValue("status", str(answer.status))
    for name in headers:
        value = answer.headers.get(name)
        if value is not None:
            out[f"header.{name}"] = FieldValue(f"header.{name}", value)
    content_type = answer.headers.get("content-type", "")
    parsed: object = None
    is_json = False
    if answer.body and not answer.truncated and _is_json(content_type):
        try:
            parsed = json.loads(answer.body)
            is_json = True
        except ValueError:
            is_json = False
    if is_json:
        _flatten(parsed, "body", "body", out, 0)
    elif answer.body or answer.truncated:
        out["body"] = FieldValue("body", _digest(answer.body, answer.truncated))
    patterns = tuple(ignore)
    if patterns:
        out = {k: v for k, v in out.items() if not any(fnmatch.fnmatchcase(v.name, p) for p in patterns)}
    return out


def differing(a: Flat, b: Flat) -> set[str]:
    """Field names (folded) whose value differs, or which only one side has."""
    names: set[str] = set()
    for key in a.keys() | b.keys():
        left, right = a.get(key), b.get(key)
        if left is None:
            names.add(b[key].name)
        elif right is None or left.value != right.value:
            names.add(left.name)
    return names


def example_value(flat: Flat, name: str, limit: int = 160) -> str:
    """The first value under the folded field ``name``, for a report example."""
    for value in flat.values():
        if value.name == name:
            return value.value if len(value.value) <= limit else value.value[: limit - 1] + "…"
    return "(absent)"
