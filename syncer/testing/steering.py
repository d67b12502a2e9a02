"""A stand-in for the agent's steering path, for tests, the demo and the benchmark.

It does what the agent does once its Watcher carries the routing Sources: reads the
healthy instances of the watched services (HealthSource), every config-entry kind
(ConfigEntrySource) and the KV gray rules (KVSource) from Consul over HTTP, plans with
``syncer.planning.desired.plan`` and applies through a real sink. ``follow_kv`` keeps a
blocking KV watch in a thread and applies each change at once (what the benchmark times).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable

from syncer.config import ConsulSettings
from syncer.discovery.client import ConsulClient, ConsulError
from syncer.discovery.normalize import Rules
from syncer.discovery.sources import HealthSource
from syncer.model import Desired, Server
from syncer.planning.desired import plan
from syncer.routing.compile import RoutingConfig
from syncer.routing.entries import KINDS, Entry
from syncer.routing.kv import DEFAULT_PREFIX
from syncer.routing.kv_source import KVSource
from syncer.routing.sources import ConfigEntrySource
from syncer.sinks.base import ApplyResult, Sink


class Steering:
    def __init__(
        self,
        consul_address: str,
        sink: Sink,
        services: Iterable[str],
        *,
        kv_prefix: str = DEFAULT_PREFIX,
        allow_hostnames: bool = True,
        token: str | None = None,
    ) -> None:
        self.client = ConsulClient(ConsulSettings(address=consul_address, token=token))
        self.sink = sink
        self.services = sorted(set(services))
        self._rules = Rules(allow_hostnames=allow_hostnames)
        self._entries = {kind: ConfigEntrySource(self.client, kind) for kind in KINDS}
        self.kv = KVSource(self.client, kv_prefix)
        self._kv_index = 0
        self._lock = threading.Lock()
        self._servers: dict[str, tuple[Server, ...]] = {}
        self._config = RoutingConfig()
        self.desired: Desired | None = None
        self.last: ApplyResult | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read_health(self) -> dict[str, tuple[Server, ...]]:
        out = {}
        for service in self.services:
            source = HealthSource(self.client, service, self._rules)
            answer = source.fetch(0, 0)
            _, event = source.read(answer, answer.index or 0)
            out[service] = event.servers
        return out

    def _read_entries(self) -> RoutingConfig:
        entries: list[Entry] = []
        for source in self._entries.values():
            answer = source.fetch(0, 0)
            _, event = source.read(answer, answer.index or 0)
            entries.extend(event.entries)
        return RoutingConfig.of(entries)

    def _apply(self) -> ApplyResult:
        desired, _ = plan(self._servers, self._config, self.desired)
        self.desired = desired
        self.last = self.sink.apply(desired)
        return self.last

    def sync(self) -> ApplyResult:
        """Read everything afresh (non-blocking), plan, apply."""
        with self._lock:
            self._servers = self._read_health()
            answer = self.kv.fetch(0, 0)
            _, event = self.kv.read(answer, answer.index or 0)
            self._kv_index = answer.index or 0
            self._config = dataclasses.replace(self._read_entries(), gray=event.rules)
            return self._apply()

    def follow_kv(self, wait: float = 2.0) -> None:
        """Apply every KV change as it arrives (blocking query in a thread) until ``stop``."""

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    answer = self.kv.fetch(self._kv_index, wait)
                except ConsulError:
                    if self._stop.wait(0.2):
                        return
                    continue
                index = answer.index or 0
                if index == self._kv_index:
                    continue
                with self._lock:
                    self._kv_index = index
                    _, event = self.kv.read(answer, index)
                    if event.rules != self._config.gray:
                        self._config = dataclasses.replace(self._config, gray=event.rules)
                        self._apply()

        self._thread = threading.Thread(target=loop, name="steering kv", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.client.close()  # ends a blocking read in progress
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.sink.close()
