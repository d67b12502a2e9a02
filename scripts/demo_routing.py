"""Demo scenarios for traffic steering (`make demo SCENARIO=000|003`), run by scripts/demo.py.

Each one starts a dev Consul, echo backends, an nginx printed by `syncer nginx-example
--routing-entry user-api` and the agent (`syncer run --routing`), writes Consul's own
config entries over HTTP exactly as an operator would with curl, and shows after every
step where real requests through nginx land.

* 000 (seed 000, moving migrated API routes to the new framework): two paths move to
  the new pool one after the other, every other path stays on the old one.
* 003 (seed 003, gray release with rollback in reach): the new version's share goes
  0 -> 10 -> 50 -> 100 %, each step a read-modify-write of the splitter with ``?cas=``.
"""

from __future__ import annotations

import collections
import os
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
from syncer.testing.ports import free_port, port_open
from syncer.testing.routing import EchoBackends, Mode, RoutingLab
from syncer.testing.wait import wait_until

SYNCER = [sys.executable, "-m", "syncer"]
ENTRY = "user-api"
OLD, NEW = ["old-1", "old-2"], ["new-1"]


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m" if sys.stdout.isatty() else f"\n==> {text}", flush=True)


def put_entry(consul: str, entry: dict[str, Any], cas: int | None = None) -> bool:
    query = f"?cas={cas}" if cas is not None else ""
    answer = requests.put(f"{consul}/v1/config{query}", json=entry, timeout=5)
    if answer.status_code != 200:
        raise RuntimeError(f"Consul refused {entry['Kind']}/{entry['Name']}: {answer.status_code} {answer.text}")
    return bool(answer.json())


def counts(lab: RoutingLab, path: str, count: int) -> collections.Counter[str]:
    return collections.Counter(lab.request(path).backend for _ in range(count))


def side(backend: str) -> str:
    return "new" if backend in NEW else "old" if backend in OLD else backend


class Demo:
    def __init__(self, mode: Mode, work: Path) -> None:
        self.mode, self.work = mode, work
        self.undo: list[Callable[[], object]] = []

    def start(self) -> RoutingLab:
        port = 8500 if not port_open(8500) else free_port()
        dev = DevConsul(port=port).start()
        self.undo.append(dev.stop)
        self.consul = dev.url
        print(f"    dev Consul (an in-memory stand-in, not Consul) on {dev.address}")
        farm = EchoBackends(self.work / "backends", OLD + NEW).start()
        self.undo.append(farm.stop)
        writer = ConsulWriter(dev.url)
        for name in OLD + NEW:
            writer.register(
                ENTRY, name, farm.ports[name], meta={"framework": "phalcon3" if name in NEW else "phalcon1"}
            )
        print(f"    {ENTRY}: {', '.join(OLD)} run the old framework, {', '.join(NEW)} the new one")
        for entry in (
            {"Kind": "service-defaults", "Name": ENTRY, "Protocol": "http"},
            {"Kind": "service-resolver", "Name": ENTRY, "DefaultSubset": "old",
             "Subsets": {"old": {"Filter": "Service.Meta.framework == phalcon1"},
                         "new": {"Filter": "Service.Meta.framework == phalcon3"}}},
        ):  # fmt: skip
            put_entry(dev.url, entry)
        print("    service-defaults (Protocol http) and service-resolver (subsets old/new, default old) written")
        lab = RoutingLab(self.mode, self.work / "lab", dev.url, entries=(ENTRY,), services=(ENTRY,),
                         worker_processes=2).start()  # fmt: skip
        self.undo.append(lab.stop)
        print(f"    nginx ({self.mode} mode, `syncer nginx-example --routing-entry {ENTRY}`) on 127.0.0.1:{lab.port}")
        args = [*SYNCER, *lab.agent_args(dev.address)]
        args[args.index("json")] = "console"
        log = (self.work / "agent.log").open("wb")
        agent = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())

        def stop() -> None:
            agent.send_signal(signal.SIGTERM)
            agent.wait(10)
            log.close()

        self.undo.append(stop)
        print(f"    agent: syncer {' '.join(args[3:])}\n    agent log: {self.work / 'agent.log'}")
        self.workers = {p.pid for p in lab.nginx.workers()}
        wait_until(lambda: lab.request("/").backend in OLD, timeout=30, message="the agent's first sync")
        return lab

    def seen_workers(self, lab: RoutingLab) -> None:
        self.workers.update(p.pid for p in lab.nginx.workers())

    def close(self, lab: RoutingLab | None, keep: bool) -> None:
        if lab is not None:
            say("what it cost")
            self.seen_workers(lab)
            meaning = "a new pair per reload" if self.mode == "reload" else "the same two: no reload ever happened"
            print(f"    nginx worker processes seen over the run: {len(self.workers)} ({meaning})")
            if keep:
                say(f"left running: curl -H 'Host: {ENTRY}' http://127.0.0.1:{lab.port}/api/user/user.info3")
                signal.pause()
        for undo in reversed(self.undo):
            try:
                undo()
            except Exception as exc:  # keep tearing down the rest
                print(f"    (cleanup: {exc})", file=sys.stderr)


PATHS = ["/api/user/user.info1", "/api/user/user.info2", "/api/user/user.info3", "/api/user/100/10/post.json"]


def scenario_000(mode: Mode, work: Path, keep: bool) -> int:
    """Seed 000: new API routes go to the new framework's pool, the rest stay."""
    demo, lab = Demo(mode, work), None
    try:
        say(f"seed 000, route migration ({mode} mode)")
        lab = demo.start()
        moved: list[str] = []

        def show(step: str) -> None:
            say(step)
            wait_until(lambda: all(side(lab.request(p).backend) == ("new" if p in moved else "old") for p in PATHS),
                       timeout=30, interval=0.05, message=step)  # fmt: skip
            for path in PATHS:
                seen = counts(lab, path, 20)
                spread = "  ".join(f"{name}={n}" for name, n in sorted(seen.items()))
                print(f"    {path:<28} 20 requests: {spread}")
            demo.seen_workers(lab)

        show("no service-router yet: every path goes to the old framework")
        for path in ("/api/user/user.info3", "/api/user/user.info2"):
            moved.append(path)
            routes = [{"Match": {"HTTP": {"PathExact": p}}, "Destination": {"ServiceSubset": "new"}} for p in moved]
            put_entry(demo.consul, {"Kind": "service-router", "Name": ENTRY, "Routes": routes})
            show(f"service-router: {', '.join(moved)} -> subset new")
        return 0
    finally:
        demo.close(lab, keep)


def only(lab: RoutingLab, want: str) -> Callable[[], bool]:
    return lambda: all(side(lab.request("/").backend) == want for _ in range(20))


def scenario_003(mode: Mode, work: Path, keep: bool) -> int:
    """Seed 003: the new version's share grows 0 -> 10 -> 50 -> 100 %."""
    demo, lab = Demo(mode, work), None
    try:
        say(f"seed 003: before moving traffic, replay real requests against old and new ({mode} mode)")
        import demo_compare  # noqa: PLC0415 - scripts/demo_compare.py, beside this file

        if demo_compare.run(sys.stdout) != 0:
            say("syncer compare did not find exactly the routes that differ; not shifting traffic")
            return 1
        say(f"seed 003, gradual shift ({mode} mode)")
        lab = demo.start()
        for percent in (0, 10, 50, 100):
            current = requests.get(f"{demo.consul}/v1/config/service-splitter/{ENTRY}", timeout=5)
            index = current.json()["ModifyIndex"] if current.status_code == 200 else 0
            splits: list[dict[str, Any]] = [
                {"Weight": 100 - percent, "ServiceSubset": "old"},
                {"Weight": percent, "ServiceSubset": "new"},
            ]
            entry = {"Kind": "service-splitter", "Name": ENTRY, "Splits": [s for s in splits if s["Weight"]]}
            assert put_entry(demo.consul, entry, cas=index), "someone else changed the splitter"
            say(f"service-splitter (?cas={index}): old {100 - percent} %, new {percent} %")
            started = time.monotonic()
            if percent in (0, 100):
                wait_until(only(lab, "new" if percent else "old"), timeout=30, interval=0.05, message=f"{percent} %")
            else:
                wait_until(lambda: "new" in {side(lab.request("/").backend) for _ in range(60)}
                           and "old" in {side(lab.request("/").backend) for _ in range(20)}, timeout=30,
                           interval=0.05, message=f"{percent} %")  # fmt: skip
            took = time.monotonic() - started
            seen = collections.Counter(side(lab.request("/").backend) for _ in range(400))
            print(f"    400 requests through nginx: old={seen['old']}  new={seen['new']}   (applied in {took:.2f}s)")
            demo.seen_workers(lab)
        return 0
    finally:
        demo.close(lab, keep)


SCENARIOS: dict[str, Callable[[Mode, Path, bool], int]] = {"000": scenario_000, "003": scenario_003}
