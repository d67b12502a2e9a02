"""An answer over the client's size limit is refused whole, like a malformed one. (The
limit is 64 MiB; here it is lowered for the test instead of sending 64 MiB.)"""

from __future__ import annotations

import pytest

from syncer.config import ConsulSettings
from syncer.devconsul.server import DevConsul
from syncer.discovery import client as client_module
from syncer.discovery.client import ConsulClient, ConsulError
from syncer.discovery.events import Event, ServiceChanged, WatchFailed
from syncer.discovery.normalize import Rules
from syncer.discovery.sources import HealthSource
from syncer.discovery.watch import Watch, WatchOptions
from syncer.testing.consul import ConsulWriter
from syncer.testing.wait import wait_until


def test_an_oversized_answer_is_refused_and_retried(dev_consul: DevConsul, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over the limit: a ConsulError naming the size, a WatchFailed event, no ServiceChanged;
    back under the limit (an instance leaves), the watch delivers the new set."""
    writer = ConsulWriter(dev_consul.url)
    for i in range(30):
        writer.register("web", f"w{i}", 8000 + i, address="10.0.0.1")
    monkeypatch.setattr(client_module, "MAX_BODY", 10_000)
    client = ConsulClient(ConsulSettings(address=dev_consul.address))
    with pytest.raises(ConsulError, match="bytes, over the 10000 limit"):
        client.health_service("web")

    seen: list[Event] = []
    watch = Watch(
        HealthSource(client, "web", Rules()),
        seen.append,
        WatchOptions(wait=lambda: 1.0, backoff_initial=0.05, backoff_max=0.2),
    ).start()
    try:
        wait_until(lambda: sum(isinstance(e, WatchFailed) for e in seen) >= 2, message="failures reported")
        assert not any(isinstance(e, ServiceChanged) for e in seen)
        for i in range(5, 30):
            writer.deregister(f"w{i}")
        changed = wait_until(lambda: [e for e in seen if isinstance(e, ServiceChanged)], message="a usable answer")
        assert len(changed[0].servers) == 5
    finally:
        watch.stop()
        client.close()
        writer.close()
