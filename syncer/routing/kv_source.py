"""The KV Source: one blocking ``GET /v1/kv/<prefix>?recurse`` for every gray rule.

Each key is validated on its own. A refused key is logged once per new value (key, field,
reason) and its last good value stays in force; a deleted key is gone. The event carries
the assembled rules plus the refusals, so metrics and health can count them.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

import structlog

from syncer.discovery.client import Answer, ConsulClient
from syncer.routing import kv
from syncer.routing.events import GrayRulesChanged, KVRejection
from syncer.routing.kv_rules import GrayRules, assemble

log = structlog.get_logger("syncer.routing.kv")


Parsed = kv.Override | kv.AddressList | kv.HostMap


class KVSource:
    kind = "kv"

    def __init__(self, client: ConsulClient, prefix: str = kv.DEFAULT_PREFIX) -> None:
        self.prefix = prefix
        self.key = f"kv:{prefix}"
        self._client = client
        self._good: dict[str, tuple[kv.KeyKind, Parsed]] = {}  # last good value per key
        self._refused_at: dict[str, int] = {}  # key -> ModifyIndex already logged
        self._warned_acl = False
        self._parsed_at: dict[str, int] = {}  # key -> ModifyIndex whose value is in _good
        self._rejected: dict[str, KVRejection] = {}  # key -> its latest refusal

    def fetch(self, index: int, wait: float) -> Answer:
        return self._client.kv_recurse(self.prefix, index=index, wait=wait)

    def read(self, answer: Answer, index: int) -> tuple[object, GrayRulesChanged]:
        if answer.filtered_by_acls and not self._warned_acl:
            # Consul hides keys the token cannot read: the rules would silently be partial
            log.warning("kv answer filtered by ACLs: give syncer's token key_prefix read", prefix=self.prefix)
        self._warned_acl = answer.filtered_by_acls
        if answer.filtered_by_acls and not answer.body and self._good:
            # nothing readable is not proof that the rules were deleted: keep the last good ones
            rules = self.rules()
            return (rules, ()), GrayRulesChanged(rules, (), index, time.monotonic())
        rejections = self.absorb(answer.body)
        rules = self.rules()
        return (rules, rejections), GrayRulesChanged(rules, rejections, index, time.monotonic())

    def absorb(self, body: Any) -> tuple[KVRejection, ...]:
        """Fold one recurse answer into the last good values; return what was refused."""
        items = body if isinstance(body, list) else []
        seen: set[str] = set()
        rejections: list[KVRejection] = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("Key"), str):
                continue
            key: str = item["Key"]
            seen.add(key)
            modify = item.get("ModifyIndex")
            if isinstance(modify, int) and modify in (self._parsed_at.get(key), self._refused_at.get(key)):
                continue  # unchanged since the last answer: its good value (or refusal) stands
            try:
                kind = kv.classify(key, self.prefix)
                if kind is None:
                    continue
                self._good[key] = (kind, _parse(key, kind, _value(key, item.get("Value"))))
                self._refused_at.pop(key, None)
                self._rejected.pop(key, None)
                if isinstance(modify, int):
                    self._parsed_at[key] = modify
            except kv.KVInvalid as exc:
                kept = key in self._good
                rejections.append(KVRejection(key, exc.field, exc.reason, kept))
                self._rejected[key] = rejections[-1]
                if self._refused_at.get(key) != modify:
                    self._refused_at[key] = modify if isinstance(modify, int) else -1
                    log.warning(
                        "kv key refused",
                        key=key,
                        field=exc.field,
                        reason=exc.reason,
                        kept="last good value" if kept else "nothing (no good value yet)",
                    )
        for table in (self._good, self._refused_at, self._parsed_at, self._rejected):
            for gone in set(table) - seen:
                del table[gone]
        # a refused key that did not change is still refused: report it on every answer
        fresh = {r.key for r in rejections}
        rejections.extend(r for k, r in sorted(self._rejected.items()) if k not in fresh and k in self._refused_at)
        return tuple(rejections)

    def rules(self) -> GrayRules:
        overrides: dict[str, kv.Override] = {}
        lists: dict[tuple[str, str], kv.AddressList] = {}
        hosts: dict[str, kv.HostMap] = {}
        for kind, value in self._good.values():
            if isinstance(kind, kv.OverrideKey) and isinstance(value, kv.Override):
                overrides[kind.entry] = value
            elif isinstance(kind, kv.ListKey) and isinstance(value, kv.AddressList):
                lists[(kind.entry, kind.name)] = value
            elif isinstance(kind, kv.HostsKey) and isinstance(value, kv.HostMap):
                hosts[kind.entry] = value
        return assemble(overrides, lists, hosts)


def _value(key: str, raw: object) -> bytes | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise kv.KVInvalid(key, "Value", "Consul answered a non-string value")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise kv.KVInvalid(key, "Value", "Consul answered a value that is not base64") from None


def _parse(key: str, kind: kv.KeyKind, raw: bytes | None) -> Parsed:
    obj = kv.decode(key, raw)
    if isinstance(kind, kv.OverrideKey):
        return kv.parse_override(key, obj)
    if isinstance(kind, kv.ListKey):
        return kv.parse_list(key, kind.name, obj)
    return kv.parse_hosts(key, obj)
