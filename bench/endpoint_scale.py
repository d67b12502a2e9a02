"""The api endpoint at scale: initial push of N upstreams, and the reconcile probe.

Starts the api-mode nginx of ``syncer nginx-example`` (one worker), then with syncer's
own ``ApiSink``:

- times the initial push of N upstreams x S servers (one ``apply``);
- times the anti-entropy probe (``needs_reconcile``) and records the size of the answer it
  reads, median of ``--probes`` calls;
- while probes run back to back, measures the p99 latency of proxied requests to an
  unrelated upstream on the same worker (what a heavy probe costs real traffic).

    .venv/bin/python -m bench.endpoint_scale --upstreams 2000 --servers 3
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import threading
import time
from pathlib import Path

import requests

from bench.analysis import percentile
from bench.backends import Backends
from syncer.config import ApiSettings
from syncer.model import Desired, Server, make_upstream
from syncer.nginx_example import ExampleOptions, render_example
from syncer.sinks.api import ApiSink
from syncer.testing.nginx import NginxProcess
from syncer.testing.ports import free_port


def desired_state(upstreams: int, servers: int, port: int) -> Desired:
    ups = {}
    for i in range(upstreams):
        name = f"svc-{i:05d}"
        ups[name] = make_upstream(
            name, [Server(f"10.{(i >> 8) & 255}.{i & 255}.{j + 1}", port) for j in range(servers)]
        )
    # "web" is real: the latency probe's traffic goes there
    ups["web"] = make_upstream("web", [Server("127.0.0.1", port)])
    return Desired(ups)


def probe_answer_bytes(admin: str, token: str) -> int:
    """Bytes of the answer the probe reads: the summary route if the endpoint has it."""
    headers = {"Authorization": f"Bearer {token}"}
    response = requests.get(f"{admin}/summary", headers=headers, timeout=30)
    if response.status_code == 404:
        response = requests.get(f"{admin}/upstreams", headers=headers, timeout=30)
    return len(response.content)


def traffic_p99(port: int, stop: threading.Event) -> list[float]:
    latencies = []
    session = requests.Session()
    while not stop.is_set():
        started = time.perf_counter()
        session.get(f"http://127.0.0.1:{port}/", headers={"Host": "web"}, timeout=10)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstreams", type=int, default=2000)
    parser.add_argument("--servers", type=int, default=3)
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--dict-size", default=None, help="lua_shared_dict size (default: nginx-example's)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/syncer-endpoint-scale"))
    args = parser.parse_args()

    workdir = args.workdir / secrets.token_hex(4)
    workdir.mkdir(parents=True)
    token = secrets.token_hex(16)
    token_file = workdir / "admin.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    port, admin_port = free_port(), free_port()
    extra = {"dict_size": args.dict_size} if args.dict_size else {}
    options = ExampleOptions(
        listen=f"127.0.0.1:{port}",
        admin_listen=f"127.0.0.1:{admin_port}",
        services=("web",),
        token_file=str(token_file),
        snapshot_file=None,
        access_log=None,
        admin_access_log=None,
        worker_processes=1,
        **extra,
    )
    nginx = NginxProcess(workdir / "nginx", render_example("api", options))
    backends = Backends(workdir / "backends", ["b1"]).start()
    nginx.start(wait_port=port)
    admin = f"http://127.0.0.1:{admin_port}"
    sink = ApiSink(ApiSettings(endpoint=admin, token=token, timeout=60))
    try:
        desired = desired_state(args.upstreams, args.servers, backends.ports["b1"])
        started = time.perf_counter()
        result = sink.apply(desired)
        push = time.perf_counter() - started
        detail = f", {result.detail}" if result.detail else ""
        count = len(desired.upstreams)
        print(f"initial push: {count} upstreams x {args.servers} servers: {push:.2f} s ({result.action}{detail})")

        size = probe_answer_bytes(admin, token)
        stop = threading.Event()
        holder: list[list[float]] = []
        thread = threading.Thread(target=lambda: holder.append(traffic_p99(port, stop)))
        quiet: list[float] = []
        thread.start()
        time.sleep(2.0)  # traffic alone first
        stop.set()
        thread.join()
        quiet = holder.pop()
        stop.clear()
        thread = threading.Thread(target=lambda: holder.append(traffic_p99(port, stop)))
        thread.start()
        times = []
        for _ in range(args.probes):
            started = time.perf_counter()
            moved = sink.needs_reconcile()
            times.append((time.perf_counter() - started) * 1000)
            assert not moved, "the probe saw a change nobody made"
        stop.set()
        thread.join()
        busy = holder.pop()
        print(f"probe: answer {size:,} bytes, median {statistics.median(times):.2f} ms, max {max(times):.2f} ms")
        print(
            f"traffic on the same worker: p99 {percentile(quiet, 99):.2f} ms alone, "
            f"{percentile(busy, 99):.2f} ms while probing ({len(busy)} requests)"
        )
        print(json.dumps({"push_s": push, "probe_bytes": size, "probe_ms": statistics.median(times)}))
    finally:
        sink.close()
        nginx.stop()
        backends.stop()


if __name__ == "__main__":
    main()
