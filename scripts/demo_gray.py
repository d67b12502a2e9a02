"""Demo scenarios for gray release from Consul KV (`make demo SCENARIO=001|002`), run by
scripts/demo.py.

Each starts a dev Consul, echo backends, an nginx printed by `syncer nginx-example
--routing-entry web` and the agent (`syncer run --routing`), writes KV values over
Consul's HTTP API exactly as an operator would with curl, and counts where real requests
through nginx land, each from its own loopback source address (127.0.0.2, 127.0.0.3, ...)
as distinct clients.

* 001 (seed 001, gray release by client address): clients on a KV list reach the `pre`
  subset, everybody else `prod`; adding an address (read-modify-write with ``?cas=``)
  moves that client on its next request.
* 002 (seed 002, switch a Host's upstream at run time): the seed's open
  `/ups_update?ups=` becomes a KV write through Consul's API, which needs an ACL token
  (the agent reads with its own).
"""

from __future__ import annotations

import base64
import collections
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from syncer.devconsul.server import DevConsul
from syncer.testing.consul import ConsulWriter
from syncer.testing.routing import EchoBackends, Mode, RoutingLab
from syncer.testing.wait import wait_until

SYNCER = [sys.executable, "-m", "syncer"]
ENTRY = "web"


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m" if sys.stdout.isatty() else f"\n==> {text}", flush=True)


def counts(lab: RoutingLab, source: str, host: str = ENTRY, n: int = 20) -> str:
    seen = collections.Counter(lab.request("/", host=host, source=source).backend for _ in range(n))
    return "  ".join(f"{name}={count}" for name, count in sorted(seen.items()))


def show(lab: RoutingLab, clients: list[str], host: str = ENTRY, n: int = 20) -> None:
    for client in clients:
        print(f"    {n} requests from {client:<10} Host {host:<17} -> {counts(lab, client, host, n)}")


class KV:
    """Consul's KV API as an operator's curl uses it (token in a header, ``?cas=``)."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url, self.headers = url, ({"X-Consul-Token": token} if token else {})

    def put(self, key: str, value: Any, cas: int | None = None) -> requests.Response:
        query = f"?cas={cas}" if cas is not None else ""
        return requests.put(f"{self.url}/v1/kv/{key}{query}", data=json.dumps(value), headers=self.headers, timeout=5)

    def get(self, key: str) -> tuple[Any, int]:
        answer = requests.get(f"{self.url}/v1/kv/{key}", headers=self.headers, timeout=5)
        answer.raise_for_status()
        entry = answer.json()[0]
        return json.loads(base64.b64decode(entry["Value"])), int(entry["ModifyIndex"])


class Demo:
    """Dev Consul, echo backends, nginx (`--routing-entry web`) and the agent, stopped in reverse."""

    def __init__(self, mode: Mode, work: Path) -> None:
        self.mode, self.work = mode, work
        self.undo: list[Callable[[], object]] = []

    def start(
        self,
        backends: dict[str, tuple[str, dict[str, str]]],
        acl: tuple[str, str] | None,
        setup: Callable[[str], None],
    ) -> RoutingLab:
        """``backends``: name -> (service, meta); ``acl``: (operator token, agent token);
        ``setup(consul_url)`` writes entries and KV before the agent starts."""
        dev = DevConsul(port=0, acl_tokens=acl or ()).start()
        self.undo.append(dev.stop)
        self.consul = dev.url
        print(f"    dev Consul (an in-memory stand-in, not Consul) on {dev.address}"
              + (", ACLs on (default deny)" if acl else ""))  # fmt: skip
        farm = EchoBackends(self.work / "backends", list(backends)).start()
        self.undo.append(farm.stop)
        writer = ConsulWriter(dev.url, token=acl[0] if acl else None)
        self.undo.append(writer.close)
        for name, (service, meta) in backends.items():
            writer.register(service, name, farm.ports[name], meta=meta)
        services = sorted({service for service, _ in backends.values()})
        setup(dev.url)
        lab = RoutingLab(self.mode, self.work / "lab", dev.url, entries=(ENTRY,), services=(ENTRY,),
                         worker_processes=2).start()  # fmt: skip
        self.undo.append(lab.stop)
        print(f"    nginx ({self.mode} mode, `syncer nginx-example --routing-entry {ENTRY}`) on 127.0.0.1:{lab.port}")
        args = [*SYNCER, "run", "--mode", self.mode, *(a for s in services for a in ("--service", s)), "--routing",
                "--consul-addr", dev.address, "--metrics-listen", "127.0.0.1:0", "--log-format", "console"]  # fmt: skip
        if self.mode == "reload":
            args += ["--output", str(lab.upstream_conf), "--nginx", lab.nginx.binary, "--nginx-prefix",
                     str(lab.nginx.prefix), "--nginx-conf", str(lab.nginx.conf_path)]  # fmt: skip
        else:
            args += ["--api-endpoint", f"http://127.0.0.1:{lab.admin_port}", "--api-token-file", str(lab.token_file)]
        env = os.environ.copy()
        if acl:  # the agent's own token, from a file (never argv)
            token_file = self.work / "consul.token"
            token_file.write_text(acl[1] + "\n")
            token_file.chmod(0o600)
            args += ["--consul-token-file", str(token_file)]
        log = (self.work / "agent.log").open("wb")
        agent = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)

        def stop() -> None:
            agent.send_signal(signal.SIGTERM)
            agent.wait(10)
            log.close()

        self.undo.append(stop)
        print(f"    agent: syncer {' '.join(args[3:])}\n    agent log: {self.work / 'agent.log'}")
        self.workers = {p.pid for p in lab.nginx.workers()}
        return lab

    def until(self, lab: RoutingLab, source: str, host: str, backend_prefix: str, what: str) -> float:
        """Seconds until a request from ``source`` for ``host`` reached a ``backend_prefix*``."""
        started = time.monotonic()
        wait_until(
            lambda: lab.request("/", host=host, source=source).backend.startswith(backend_prefix),
            timeout=30,
            interval=0.005,
            message=what,
        )
        return time.monotonic() - started

    def settled(self, lab: RoutingLab, want: list[tuple[str, str, str]]) -> None:
        """Until every (source, host, backend prefix) holds for 10 requests in a row (first sync done)."""

        def holds() -> bool:
            return all(
                lab.request("/", host=host, source=source).backend.startswith(prefix)
                for source, host, prefix in want
                for _ in range(10)
            )

        wait_until(holds, timeout=60, interval=0.05, message=f"the agent's first sync\n{self.work / 'agent.log'}")

    def close(self, lab: RoutingLab | None, keep: bool) -> None:
        if lab is not None:
            self.workers.update(p.pid for p in lab.nginx.workers())
            meaning = "a new pair per reload" if self.mode == "reload" else "the same two: no reload ever happened"
            say("what it cost")
            print(f"    nginx worker processes seen over the run: {len(self.workers)} ({meaning})")
            if keep:
                say(f"left running: curl --interface 127.0.0.2 -H 'Host: {ENTRY}' http://127.0.0.1:{lab.port}/")
                signal.pause()
        for undo in reversed(self.undo):
            try:
                undo()
            except Exception as exc:  # keep tearing down the rest
                print(f"    (cleanup: {exc})", file=sys.stderr)


def scenario_001(mode: Mode, work: Path, keep: bool) -> int:
    """Seed 001: the gray list's clients reach pre, all others prod; adding one moves it."""
    say(f"seed 001: gray release by client address, {mode} mode (files under {work})")
    demo, lab = Demo(mode, work), None
    try:
        resolver = {"Kind": "service-resolver", "Name": ENTRY, "DefaultSubset": "prod",
                    "Subsets": {"prod": {"Filter": "Service.Meta.version == prod"},
                                "pre": {"Filter": "Service.Meta.version == pre"}}}  # fmt: skip
        key = "syncer/gray/web/lists/testers"
        testers = {"target": {"service": ENTRY, "subset": "pre"}, "addresses": ["127.0.0.2", "127.0.0.3"]}

        def setup(consul: str) -> None:
            requests.put(f"{consul}/v1/config", json=resolver, timeout=5).raise_for_status()
            KV(consul).put(key, testers).raise_for_status()

        lab = demo.start({"prod-1": (ENTRY, {"version": "prod"}), "prod-2": (ENTRY, {"version": "prod"}),
                          "pre-1": (ENTRY, {"version": "pre"})}, None, setup)  # fmt: skip
        print("    web: prod-1, prod-2 (Meta.version=prod), pre-1 (pre); resolver subsets prod/pre, default prod")
        kv = KV(demo.consul)
        print(f"    PUT /v1/kv/{key} {json.dumps(testers)}")
        clients = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
        demo.settled(lab, [(c, ENTRY, "pre-" if c in testers["addresses"] else "prod-") for c in clients])
        say("the testers reach pre, everybody else prod")
        show(lab, clients)
        value, index = kv.get(key)
        value["addresses"].append("127.0.0.4")
        answer = kv.put(key, value, cas=index).text.strip()
        say(f"add 127.0.0.4: GET the list, append, PUT ?cas={index} -> {answer}")
        took = demo.until(lab, "127.0.0.4", ENTRY, "pre-", "127.0.0.4 on pre")
        how = "after one reload" if mode == "reload" else "pushed, no reload"
        print(f"    127.0.0.4's requests reach pre {took * 1000:.0f} ms after the write ({how}):")
        show(lab, clients)
        return 0
    finally:
        demo.close(lab, keep)


def scenario_002(mode: Mode, work: Path, keep: bool) -> int:
    """Seed 002: switch which upstream serves a Host at run time, through an ACL-protected KV write."""
    say(f"seed 002: switch a Host's upstream at run time, {mode} mode (files under {work})")
    operator, agent_token = secrets.token_hex(16), secrets.token_hex(16)
    demo, lab = Demo(mode, work), None
    try:
        key = "syncer/gray/web/hosts"
        default = {"service": "default-backend"}
        hosts = {"hosts": {"shop.example.com": default}, "default": default}
        backends: dict[str, tuple[str, dict[str, str]]] = {
            "default-1": ("default-backend", {}), "default-2": ("default-backend", {}),
            "lua-1": ("lua-backend", {}), "lua-2": ("lua-backend", {}), "web-1": (ENTRY, {}),
        }  # fmt: skip
        lab = demo.start(
            backends, (operator, agent_token), lambda url: KV(url, operator).put(key, hosts).raise_for_status()
        )
        print("    default-backend: default-1, default-2; lua-backend: lua-1, lua-2 (the seed's two upstreams)")
        kv = KV(demo.consul, operator)
        print(f"    PUT /v1/kv/{key} (operator's token) {json.dumps(hosts)}")
        demo.settled(lab, [("127.0.0.2", h, "default-") for h in ("shop.example.com", "blog.example.com")])
        say("every Host is served by default-backend")
        for host in ("shop.example.com", "blog.example.com"):
            show(lab, ["127.0.0.2"], host)
        switched = {**hosts, "hosts": {"shop.example.com": {"service": "lua-backend"}}}
        refused = KV(demo.consul).put(key, switched)
        say("the seed's /ups_update?ups= let anyone switch; here a write needs a token")
        print(f"    PUT /v1/kv/{key} without a token -> {refused.status_code} {refused.text.strip()[:100]}")
        show(lab, ["127.0.0.2"], "shop.example.com")
        _, index = kv.get(key)
        answer = kv.put(key, switched, cas=index).text.strip()
        say(f"switch shop.example.com to lua-backend: PUT ?cas={index} with the operator's token -> {answer}")
        took = demo.until(lab, "127.0.0.2", "shop.example.com", "lua-", "shop.example.com on lua-backend")
        print(f"    shop.example.com is served by lua-backend {took * 1000:.0f} ms after the write:")
        for host in ("shop.example.com", "blog.example.com"):
            show(lab, ["127.0.0.2"], host)
        return 0
    finally:
        demo.close(lab, keep)


SCENARIOS: dict[str, Callable[[Mode, Path, bool], int]] = {"001": scenario_001, "002": scenario_002}
