"""How many instances nginx spreads traffic over, with Consul's DNS defaults and with
``enable_truncate``.

Consul answers a UDP query without EDNS with at most ``udp_answer_limit`` (3) records and,
unless ``enable_truncate`` is set, without the TC bit; nginx's resolver sends no EDNS. One
keep-alive connection (so one nginx worker, one resolver cache) sends batches of requests
to a service of N instances; the figure is how many distinct instances a batch reached.
"""

from __future__ import annotations

import contextlib
import statistics
from dataclasses import replace
from pathlib import Path

from bench.dns_backends import DnsBackends
from bench.dns_mode import AddressedWriter, dns_config
from bench.dns_proxy import DnsProxy, Target
from bench.ports import start_with_fresh_ports
from bench.rawhttp import KeepAliveClient
from bench.settings import Settings
from syncer.devconsul.server import DevConsul
from syncer.testing.wait import wait_until

BATCHES = 5
BATCH = 100


def distinct_per_batch(settings: Settings, backends: DnsBackends, names: list[str], workdir: Path, label: str) -> int:
    """Median over batches of the distinct instances one batch of requests reached."""
    with contextlib.ExitStack() as stack:
        consul = DevConsul(port=0, dns_listen=("127.0.0.1", 0), dns_config=dns_config(settings)).start()
        stack.callback(consul.stop)
        assert consul.dns is not None
        dns_port = consul.dns.port
        writer = AddressedWriter(consul.url, backends.addresses)
        stack.callback(writer.close)
        for name in names:
            writer.register("web", name, backends.port)
        proxy = start_with_fresh_ports(
            lambda: DnsProxy(
                "dns", workdir, [Target("web", backends.port)], dns_port, settings.dns_valid,
                settings.worker_processes, label=label,
            ),
            DnsProxy.start,
            DnsProxy.stop,
        )  # fmt: skip
        stack.callback(proxy.stop)
        client = KeepAliveClient(proxy.port, "web", timeout=3.0)
        stack.callback(client.close)
        wait_until(lambda: client.get("/").status == 200, timeout=10, message="the DNS nginx answering")
        counts = [len({client.get("/").backend for _ in range(BATCH)}) for _ in range(BATCHES)]
    return int(statistics.median(counts))


def probe(settings: Settings, backends: DnsBackends, names: list[str], workdir: Path) -> dict[str, int]:
    """Distinct instances per batch: Consul's defaults vs ``enable_truncate = true``."""
    return {
        key: distinct_per_batch(
            replace(settings, dns_enable_truncate=truncate), backends, names, workdir, f"limit-{key}"
        )
        for key, truncate in (("defaults", False), ("enable_truncate", True))
    }
