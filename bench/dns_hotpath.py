"""What a request costs through the resolver, split from what the missing keep-alive costs.

The ``dns`` form (variable ``proxy_pass`` resolved through ``resolver``) differs from the
names-resolved-at-start form in two ways: a resolver cache lookup per request (and a
query when a worker's answer expired), and no upstream keep-alive, because the peer set
is built per request. Three nginx with the same instances, no churn, only wrk:
``dns``; ``static, no keep-alive``; ``static, keepalive 32`` (the ``dns-static`` column).
The first two differ by resolution alone, the last two by keep-alive alone. Rounds run
the three back to back (rotating the order) and the ratios are medians of per-round
ratios, so that other processes' load drifting between rounds cancels out.
"""

from __future__ import annotations

import contextlib
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from bench.dns_backends import DnsBackends
from bench.dns_mode import AddressedWriter, dns_config, wait_serving
from bench.dns_proxy import DnsProxy, Target
from bench.load import WrkResult, run_wrk
from bench.mode_run import say
from bench.ports import start_with_fresh_ports
from bench.settings import Settings
from syncer.devconsul.server import DevConsul

FORMS = ("dns", "static-no-keepalive", "static-keepalive")


@dataclass
class DnsHotpath:
    seconds: float
    rounds: list[dict[str, WrkResult]] = field(default_factory=list)

    def median_rps(self, form: str) -> float:
        return statistics.median(r[form].rps for r in self.rounds) if self.rounds else 0.0

    def median_p99(self, form: str) -> float:
        return statistics.median(r[form].latency_ms["p99"] for r in self.rounds) if self.rounds else 0.0

    def ratio(self, form: str, to: str) -> float:
        """Median over rounds of ``form``'s requests/s over ``to``'s."""
        if not self.rounds:
            return 0.0
        return statistics.median(r[form].rps / max(1.0, r[to].rps) for r in self.rounds)

    def ratio_range(self, form: str, to: str) -> str:
        ratios = [r[form].rps / max(1.0, r[to].rps) * 100 for r in self.rounds]
        return f"{min(ratios):.0f} to {max(ratios):.0f} %" if ratios else "n/a"

    def failed(self, form: str) -> int:
        return sum(r[form].failed for r in self.rounds)


def run_dns_hotpath(settings: Settings, backends: DnsBackends, names: list[str], workdir: Path) -> DnsHotpath:
    result = DnsHotpath(settings.hotpath_seconds)
    with contextlib.ExitStack() as stack:
        consul = DevConsul(port=0, dns_listen=("127.0.0.1", 0), dns_config=dns_config(settings)).start()
        stack.callback(consul.stop)
        assert consul.dns is not None
        dns_port = consul.dns.port
        writer = AddressedWriter(consul.url, backends.addresses)
        stack.callback(writer.close)
        for name in names:
            writer.register("web", name, backends.port)
        targets = [Target("web", backends.port)]
        proxies: dict[str, DnsProxy] = {}
        for form in FORMS:
            variant = "dns" if form == "dns" else "dns-static"
            keepalive = 32 if form == "static-keepalive" else 0

            def build(variant: str = variant, keepalive: int = keepalive, form: str = form) -> DnsProxy:
                return DnsProxy(
                    "dns" if variant == "dns" else "dns-static", workdir, targets, dns_port, settings.dns_valid,
                    settings.worker_processes, label=f"hotpath-{form}", keepalive=keepalive,
                )  # fmt: skip

            proxies[form] = start_with_fresh_ports(build, DnsProxy.start, DnsProxy.stop)
            stack.callback(proxies[form].stop)
            wait_serving(proxies[form].port, set(names), "dns")
        if settings.hotpath_warmup:
            for proxy in proxies.values():
                run_wrk(workdir, proxy.port, 1, settings.wrk_threads, settings.wrk_connections)
        for number in range(settings.hotpath_rounds):
            order = FORMS[number % 3 :] + FORMS[: number % 3]
            runs = {
                form: run_wrk(
                    workdir,
                    proxies[form].port,
                    settings.hotpath_seconds,
                    settings.wrk_threads,
                    settings.wrk_connections,
                )
                for form in order
            }
            result.rounds.append(runs)
            say(
                f"DNS hot path, round {number + 1}: "
                + ", ".join(f"{form} {runs[form].rps:,.0f} req/s" for form in FORMS)
            )
    return result
