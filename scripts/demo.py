"""The README's first command: syncer against the dev Consul and a real nginx.

Starts a dev Consul, three real backends, an nginx configured by `syncer nginx-example`
and the agent itself (`syncer run`), then plays a short story — instances register, a
check fails, an instance leaves — and shows after each step where real requests through
nginx land. Everything listens on loopback; everything is stopped at the end.
"""

from __future__ import annotations

import argparse
import collections
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests
from demo_gray import SCENARIOS as GRAY_SCENARIOS  # scripts/demo_gray.py: seeds 001, 002
from demo_routing import SCENARIOS  # scripts/demo_routing.py, beside this file

from syncer.devconsul.server import DevConsul
from syncer.testing.backends import BackendFarm
from syncer.testing.consul import ConsulWriter
from syncer.testing.nginx import NginxProcess
from syncer.testing.ports import free_port, port_open
from syncer.testing.routing import Mode
from syncer.testing.wait import wait_until

ROOT = Path(__file__).resolve().parents[1]
SYNCER = [sys.executable, "-m", "syncer"]


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m" if sys.stdout.isatty() else f"\n==> {text}", flush=True)


def traffic(port: int, count: int = 60) -> collections.Counter[str]:
    seen: collections.Counter[str] = collections.Counter()
    with requests.Session() as session:
        for _ in range(count):
            response = session.get(f"http://127.0.0.1:{port}/", headers={"Host": "web"}, timeout=5)
            seen[response.headers.get("X-Backend", f"HTTP {response.status_code}")] += 1
    return seen


def show_until(port: int, expected: set[str], what: str) -> None:
    started = time.monotonic()
    wait_until(lambda: set(traffic(port, 20)) == expected, timeout=20, interval=0.05, message=what)
    seen = traffic(port)
    spread = "  ".join(f"{name}={count}" for name, count in sorted(seen.items()))
    print(f"    60 requests through nginx: {spread}   (converged in {time.monotonic() - started:.2f}s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=("reload", "api", "both"), default="reload")
    parser.add_argument("--workdir", type=Path, default=ROOT / "run" / "demo")
    parser.add_argument("--keep", action="store_true", help="leave everything running until Ctrl-C")
    SCENARIOS.update(GRAY_SCENARIOS)
    parser.add_argument("--scenario", choices=["basic", *sorted(SCENARIOS)], default="basic",
                        help="a traffic-steering story from the seeds (scripts/demo_routing.py)")  # fmt: skip
    parser.epilog = "scenarios (seed numbers): " + "; ".join(  # demo_gray.py / demo_routing.py docstrings
        f"{name}: {(fn.__doc__ or '').strip().splitlines()[0]}" for name, fn in sorted(SCENARIOS.items())
    )
    args = parser.parse_args()
    if args.scenario != "basic":
        work_root: Path = args.workdir / f"scenario-{args.scenario}"
        shutil.rmtree(work_root, ignore_errors=True)
        modes: tuple[Mode, ...] = ("reload", "api") if args.mode == "both" else (args.mode,)
        return max(SCENARIOS[args.scenario](m, work_root / m, args.keep) for m in modes)
    if args.mode == "both":
        parser.error("--mode both needs --scenario")
    mode: str = args.mode
    work: Path = args.workdir / mode
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    stack: list[Callable[[], object]] = []
    try:
        say(f"syncer demo, {mode} mode (files under {work})")
        consul_port = 8500 if not port_open(8500) else free_port()
        dev = DevConsul(port=consul_port)
        dev.start()
        stack.append(dev.stop)
        print(f"    dev Consul (an in-memory stand-in, not Consul) on {dev.address}")
        farm = BackendFarm(work / "backends", ["b1", "b2", "b3"]).start()
        stack.append(farm.stop)
        print("    backends: " + ", ".join(f"{n} on 127.0.0.1:{p}" for n, p in farm.ports.items()))

        listen, admin = free_port(), free_port()
        prefix = work / "nginx"
        (prefix / "conf").mkdir(parents=True)
        upstream_conf = prefix / "conf" / "upstream.conf"
        token_file, snapshot = work / "admin.token", work / "snapshot.json"
        token_file.write_text(secrets.token_hex(24) + "\n")
        token_file.chmod(0o600)
        example = subprocess.run(
            [*SYNCER, "nginx-example", "--mode", mode, "--listen", f"127.0.0.1:{listen}",
             "--admin-listen", f"127.0.0.1:{admin}", "--token-file", str(token_file),
             "--snapshot-file", str(snapshot), "--upstream-conf", str(upstream_conf), "--worker-processes", "2"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        if mode == "reload":
            upstream_conf.write_text("upstream web { server 127.0.0.1:65535 down; }\n")
        nginx = NginxProcess(prefix, example)
        nginx.start(wait_port=listen)
        stack.append(nginx.stop)
        print(f"    nginx (config printed by `syncer nginx-example --mode {mode}`) on 127.0.0.1:{listen}")

        consul = ConsulWriter(dev.url)
        consul.register("web", "b1", farm.ports["b1"])
        check_b2 = consul.register("web", "b2", farm.ports["b2"])

        agent_args = [*SYNCER, "run", "--mode", mode, "--service", "web", "--consul-addr", dev.address,
                      "--metrics-listen", "127.0.0.1:0", "--log-format", "console"]  # fmt: skip
        if mode == "reload":
            agent_args += ["--output", str(upstream_conf), "--nginx", nginx.binary,
                           "--nginx-prefix", str(prefix), "--nginx-conf", str(nginx.conf_path)]  # fmt: skip
        else:
            agent_args += ["--api-endpoint", f"http://127.0.0.1:{admin}", "--api-token-file", str(token_file),
                           "--snapshot-file", str(snapshot)]  # fmt: skip
        log_path = work / "agent.log"
        log_file = log_path.open("wb")
        agent = subprocess.Popen(agent_args, stdout=log_file, stderr=subprocess.STDOUT, env=os.environ.copy())

        def stop_agent() -> None:
            agent.send_signal(signal.SIGTERM)
            agent.wait(10)

        stack.append(stop_agent)
        print(f"    agent: {' '.join(agent_args[2:])}\n    agent log: {log_path}")

        generations: set[int] = {p.pid for p in nginx.workers()}

        def step(text: str, expected: set[str]) -> None:
            say(text)
            show_until(listen, expected, text)
            generations.update(p.pid for p in nginx.workers())

        step("b1 and b2 registered in Consul, both passing", {"b1", "b2"})
        consul.register("web", "b3", farm.ports["b3"], weights={"Passing": 3, "Warning": 1})
        step("b3 registers with Weights.Passing = 3", {"b1", "b2", "b3"})
        consul.check(check_b2, "critical")
        step("b2's health check fails", {"b1", "b3"})
        consul.check(check_b2, "passing")
        step("b2's check passes again", {"b1", "b2", "b3"})
        consul.deregister("b1")
        step("b1 deregisters", {"b2", "b3"})

        say("what it cost")
        meaning = "a new pair per reload" if mode == "reload" else "the same two: no reload ever happened"
        print(f"    nginx worker processes seen over the run: {len(generations)} ({meaning})")
        print(f"    agent log lines: {sum(1 for _ in log_path.open())}; try: tail {log_path}")
        if args.keep:
            say(f"left running: curl -H 'Host: web' http://127.0.0.1:{listen}/   (Ctrl-C to stop)")
            signal.pause()
        return 0
    finally:
        for undo in reversed(stack):
            try:
                undo()
            except Exception as exc:  # keep tearing down the rest
                print(f"    (cleanup: {exc})", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
