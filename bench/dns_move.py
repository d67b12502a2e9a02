"""An instance moves to another port: what each strategy does with it.

The talk's third case against DNS: containers change port when they are updated or
moved, and an A record carries no port. Two instances of ``web``: ``m-keep`` stays, and
``m-old`` moves: a new process ``m-new`` starts on the same IP and another port, the
registration (same service ID) is updated to that port, and the old process stops at
once. Then traffic is watched for a few seconds: where requests land, how many fail, how
long until the moved instance gets traffic again, and how many connections nginx had
refused (it retries those on the other instance, so clients see few failures while the
moved instance gets none).

reload and api run with their agent, as in the main scenarios; dns with its resolver.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.dns_backends import instance_server
from bench.dns_mode import AddressedWriter, dns_config, wait_serving
from bench.dns_proxy import DnsProxy, Target
from bench.mode_run import say
from bench.ports import free_ports, start_with_fresh_ports
from bench.rawhttp import ClientError, KeepAliveClient
from bench.settings import Settings
from bench.stack import Agent, Consul, Mode, Proxy
from syncer.devconsul.server import DevConsul
from syncer.testing.nginx import NginxProcess

KEEP, OLD, NEW = "m-keep", "m-old", "m-new"
KEEP_IP, MOVER_IP = "127.78.0.1", "127.78.0.2"
STRATEGIES = ("reload", "api", "dns")


@dataclass
class MoveResult:
    strategy: str
    seconds: float
    requests: int = 0
    by_backend: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    first_new_ms: float | None = None
    """From the registration update to the first request answered by the moved instance."""
    refused_connects: int = 0
    """nginx's "connect() failed (111: Connection refused)" log lines after the move."""

    @property
    def new_share(self) -> float:
        return self.by_backend.get(NEW, 0) / self.requests if self.requests else 0.0


class Listener:
    """One instance as its own nginx, so that it can stop on its own."""

    def __init__(self, workdir: Path, name: str, host: str, port: int, backend: str | None = None) -> None:
        """``backend``: the name it answers with (default ``name``, which also names its folder)."""
        conf = f"""worker_processes 1;
error_log logs/error.log warn;
pid logs/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 1000000;
{instance_server(backend or name, host, port)}
}}
"""
        self.nginx = NginxProcess(workdir / f"move-{name}", conf)

    def start(self) -> Listener:
        self.nginx.start()
        return self

    def stop(self) -> None:
        self.nginx.stop(timeout=5)


def watch(port: int, seconds: float, moved_at: float, result: MoveResult) -> None:
    """Back-to-back requests through the proxy for ``seconds``; tally where they land."""
    client = KeepAliveClient(port, "web", timeout=3.0)
    landed: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            try:
                response = client.get("/")
            except ClientError as exc:
                failed[exc.kind] += 1
                continue
            result.requests += 1
            if response.status != 200:
                failed[f"http_{response.status}"] += 1
                continue
            landed[response.backend] += 1
            if response.backend == NEW and result.first_new_ms is None:
                result.first_new_ms = (time.monotonic() - moved_at) * 1000
    finally:
        client.close()
    result.by_backend = dict(landed)
    result.failed = dict(failed)


def _move(writer: AddressedWriter, old: Listener, new_port: int) -> float:
    moved_at = time.monotonic()
    writer.register("web", OLD, new_port, MOVER_IP)  # same service ID, new port
    old.stop()
    return moved_at


def run_move(strategy: str, settings: Settings, workdir: Path) -> MoveResult:
    port, new_port = free_ports(2)
    result = MoveResult(strategy, settings.dns_move_seconds)
    with contextlib.ExitStack() as stack:
        listeners = [Listener(workdir, KEEP, KEEP_IP, port), Listener(workdir, NEW, MOVER_IP, new_port)]
        old = Listener(workdir, OLD, MOVER_IP, port)
        for listener in (*listeners, old):
            stack.callback(listener.stop)
            listener.start()
        addresses = {KEEP: KEEP_IP, OLD: MOVER_IP}
        if strategy == "dns":
            consul = DevConsul(port=0, dns_listen=("127.0.0.1", 0), dns_config=dns_config(settings)).start()
            stack.callback(consul.stop)
            assert consul.dns is not None
            dns_port = consul.dns.port
            url = consul.url
        else:
            bench_consul = Consul().start()
            stack.callback(bench_consul.stop)
            url = bench_consul.url
        writer = AddressedWriter(url, addresses)
        stack.callback(writer.close)
        writer.register("web", KEEP, port)
        writer.register("web", OLD, port)

        if strategy == "dns":
            proxy: DnsProxy | Proxy = start_with_fresh_ports(
                lambda: DnsProxy(
                    "dns", workdir, [Target("web", port)], dns_port, settings.dns_valid, settings.worker_processes,
                    label="move-dns",
                ),
                DnsProxy.start,
                DnsProxy.stop,
            )  # fmt: skip
            stack.callback(proxy.stop)
        else:
            mode: Mode = "reload" if strategy == "reload" else "api"
            (workdir / "move").mkdir(exist_ok=True)
            proxy = start_with_fresh_ports(
                lambda: Proxy(mode, workdir, settings.worker_processes, label=f"move-{mode}"), Proxy.start, Proxy.stop
            )
            stack.callback(proxy.stop)
            quiescence = settings.reload_quiescence if mode == "reload" else settings.api_quiescence
            agent = Agent(mode, proxy, bench_consul.address, workdir / "move", quiescence)
            stack.callback(agent.stop)
            agent.start()
        wait_serving(proxy.port, {KEEP, OLD}, "dns")
        refused_before = proxy.nginx.error_log().count("(111: Connection refused)")
        moved_at = _move(writer, old, new_port)
        watch(proxy.port, settings.dns_move_seconds, moved_at, result)
        result.refused_connects = proxy.nginx.error_log().count("(111: Connection refused)") - refused_before
    say(
        f"port move, {strategy}: {result.new_share * 100:.0f} % of {result.requests} requests reached the moved "
        f"instance; {sum(result.failed.values())} failed; nginx refused {result.refused_connects} connections"
    )
    return result


def run_moves(settings: Settings, workdir: Path) -> list[MoveResult]:
    return [run_move(strategy, settings, workdir) for strategy in STRATEGIES]
