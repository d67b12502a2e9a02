"""Demo scenarios of seeds 001 and 002 (gray release from Consul KV), run from scripts/demo.py.

Each starts a dev Consul, real backends and, per mode, an nginx configured by
`syncer nginx-example --routing-entry web`, fed by syncer's Sources, planner and real sink
(``syncer.testing.steering``: what the agent runs once its Watcher carries them). Every
count printed is of real HTTP requests through that nginx, each from its own loopback
source address (127.0.0.2, 127.0.0.3, ...), as distinct clients.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import json
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from syncer.devconsul.server import DevConsul
from syncer.testing.backends import BackendFarm
from syncer.testing.consul import ConsulWriter
from syncer.testing.steering_nginx import Mode, SteeredNginx
from syncer.testing.wait import wait_until

MODES: tuple[Mode, ...] = ("reload", "api")


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m" if sys.stdout.isatty() else f"\n==> {text}", flush=True)


def fetch(port: int, source: str, host: str = "web", path: str = "/") -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(source, 0))
    try:
        conn.request("GET", path, headers={"Host": host, "Connection": "close"})
        response = conn.getresponse()
        body = response.read().decode().strip()
        return body if response.status == 200 else f"HTTP {response.status}"
    finally:
        conn.close()


def counts(port: int, source: str, host: str = "web", n: int = 20) -> str:
    seen = collections.Counter(fetch(port, source, host) for _ in range(n))
    return "  ".join(f"{name}={count}" for name, count in sorted(seen.items()))


def table(port: int, clients: list[str], host: str = "web", n: int = 20) -> None:
    for client in clients:
        print(f"    {n} requests from {client:<11} Host {host:<18} -> {counts(port, client, host, n)}")


def put_kv(url: str, key: str, value: Any, token: str | None = None, cas: int | None = None) -> requests.Response:
    headers = {"X-Consul-Token": token} if token else {}
    query = f"?cas={cas}" if cas is not None else ""
    return requests.put(f"{url}/v1/kv/{key}{query}", data=json.dumps(value), headers=headers, timeout=5)


def modify_index(url: str, key: str, token: str | None = None) -> int:
    headers = {"X-Consul-Token": token} if token else {}
    entry = requests.get(f"{url}/v1/kv/{key}", headers=headers, timeout=5).json()[0]
    return int(entry["ModifyIndex"])


@contextlib.contextmanager
def steered(
    mode: Mode, work: Path, consul: DevConsul, services: tuple[str, ...], token: str | None
) -> Iterator[SteeredNginx]:
    nginx = SteeredNginx(mode, work / mode, consul.address, services, consul_token=token).start()
    try:
        nginx.sync()
        if mode == "api":
            nginx.steering.follow_kv()  # KV changes reach nginx by themselves: no reload
        yield nginx
    finally:
        nginx.stop()


def apply_change(nginx: SteeredNginx, source: str, host: str, expected: str) -> float:
    """Reload mode: one sync (the agent's part). Api mode: the KV watch does it. Returns the
    seconds until a request from ``source`` for ``host`` reached a backend named ``expected*``."""
    started = time.monotonic()
    if nginx.mode == "reload":
        nginx.sync()
    wait_until(
        lambda: fetch(nginx.port, source, host).startswith(expected), timeout=15, interval=0.005, message=expected
    )
    return time.monotonic() - started


def scenario_001(work: Path) -> None:
    """Seed 001: clients on the gray list reach `pre`, everybody else `prod`; adding an
    address moves that client on its next request (the seed kept the list in Redis and
    read it on every request; here it is KV, pushed or rendered once per change)."""
    say("seed 001: gray release by client address (KV list -> web's pre subset)")
    with contextlib.ExitStack() as stack:
        consul = DevConsul(port=0)
        consul.start()
        stack.callback(consul.stop)
        farm = stack.enter_context(BackendFarm(work / "backends", ["prod-1", "prod-2", "pre-1"]))
        writer = ConsulWriter(consul.url)
        stack.callback(writer.close)
        for name in farm.ports:
            writer.register("web", name, farm.ports[name], meta={"version": name.split("-")[0]})
        resolver = {
            "Kind": "service-resolver", "Name": "web", "DefaultSubset": "prod",
            "Subsets": {"prod": {"Filter": "Service.Meta.version == prod"},
                        "pre": {"Filter": "Service.Meta.version == pre"}},
        }  # fmt: skip
        requests.put(f"{consul.url}/v1/config", json=resolver, timeout=5).raise_for_status()
        key = "syncer/gray/web/lists/testers"
        gray = {"target": {"service": "web", "subset": "pre"}, "addresses": ["127.0.0.2", "127.0.0.3"]}
        put_kv(consul.url, key, gray).raise_for_status()
        print(f"    Consul: web = prod-1, prod-2 (Meta.version=prod), pre-1 (pre); KV {key}:")
        print(f"    {json.dumps(gray)}")
        clients = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
        for mode in MODES:
            with steered(mode, work, consul, ("web",), None) as nginx:
                say(f"{mode} mode: nginx on 127.0.0.1:{nginx.port}")
                table(nginx.port, clients)
                index = modify_index(consul.url, key)
                added = {**gray, "addresses": [*gray["addresses"], "127.0.0.4"]}
                answer = put_kv(consul.url, key, added, cas=index).text.strip()
                print(f"    PUT {key}?cas={index} adds 127.0.0.4 -> {answer}")
                took = apply_change(nginx, "127.0.0.4", "web", "pre-")
                how = "one reload" if mode == "reload" else "pushed, no reload"
                print(f"    127.0.0.4's next requests go to pre ({how}; first seen after {took * 1000:.0f} ms):")
                table(nginx.port, clients)
                put_kv(consul.url, key, gray).raise_for_status()  # back, for the next mode
                apply_change(nginx, "127.0.0.4", "web", "prod-")


def scenario_002(work: Path) -> None:
    """Seed 002: which upstream serves a Host is switched at run time. The seed's
    `/ups_update?ups=` changed it for anyone who could reach nginx; here the switch is a KV
    write through Consul's API, which needs an ACL token (syncer reads with its own)."""
    say("seed 002: switch the upstream of a Host at run time (KV Host map, ACL-protected)")
    operator, reader = secrets.token_hex(16), secrets.token_hex(16)
    with contextlib.ExitStack() as stack:
        consul = DevConsul(port=0, acl_tokens=(operator, reader))
        consul.start()
        stack.callback(consul.stop)
        farm = stack.enter_context(BackendFarm(work / "backends", ["default-1", "default-2", "lua-1", "lua-2"]))
        writer = ConsulWriter(consul.url, token=operator)
        stack.callback(writer.close)
        for name in farm.ports:
            service = "default-backend" if name.startswith("default") else "lua-backend"
            writer.register(service, name, farm.ports[name])
        key = "syncer/gray/web/hosts"
        hosts = {
            "hosts": {"shop.example.com": {"service": "default-backend"}},
            "default": {"service": "default-backend"},
        }
        put_kv(consul.url, key, hosts, token=operator).raise_for_status()
        print("    Consul (ACLs on, default deny): default-backend = default-1, default-2; lua-backend = lua-1, lua-2")
        print(f"    KV {key}: {json.dumps(hosts)}")
        switched = {**hosts, "hosts": {"shop.example.com": {"service": "lua-backend"}}}
        for mode in MODES:
            with steered(mode, work, consul, ("web", "default-backend", "lua-backend"), reader) as nginx:
                say(f"{mode} mode: nginx on 127.0.0.1:{nginx.port}")
                for host in ("shop.example.com", "blog.example.com"):
                    table(nginx.port, ["127.0.0.2"], host)
                refused = put_kv(consul.url, key, switched)
                print(f"    PUT {key} without a token -> {refused.status_code} {refused.text.strip()[:90]}")
                table(nginx.port, ["127.0.0.2"], "shop.example.com")
                answer = put_kv(consul.url, key, switched, token=operator, cas=modify_index(consul.url, key, operator))
                print(f"    PUT {key}?cas=... with the operator's token -> {answer.text.strip()}")
                took = apply_change(nginx, "127.0.0.2", "shop.example.com", "lua-")
                print(f"    shop.example.com now served by lua-backend (first seen after {took * 1000:.0f} ms):")
                for host in ("shop.example.com", "blog.example.com"):
                    table(nginx.port, ["127.0.0.2"], host)
                put_kv(consul.url, key, hosts, token=operator).raise_for_status()  # back, for the next mode
                apply_change(nginx, "127.0.0.2", "shop.example.com", "default-")


SCENARIOS = {
    "001": ("gray release by client address: a KV list sends testers to pre (seed 001)", scenario_001),
    "002": ("switch a Host's upstream at run time, token-protected (seed 002)", scenario_002),
}
