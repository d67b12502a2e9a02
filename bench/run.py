"""``python -m bench.run``: the whole benchmark, reload vs api, and its report.

Starts everything on loopback under a fresh work folder, runs the hot-path comparison
and then each mode through every scenario, writes ``report.md``, ``results.json`` and
the PNG figures to ``--out`` (default ``bench/results``), and stops every process it
started — also on an error, Ctrl-C, SIGTERM or when ``time_limit`` passes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType

from bench import machine, plots, report
from bench.analysis import summarise_mode
from bench.backends import Backends
from bench.dns_run import count_strays, run_dns_strategies
from bench.hotpath import run_hotpath
from bench.load import wrk_binary
from bench.mode_run import ModeRun, run_mode, say
from bench.ports import start_with_fresh_ports
from bench.routing import run_routing
from bench.scenarios import plan
from bench.settings import Settings, default_settings, quick_settings
from bench.stack import Mode
from syncer.testing.nginx import has_lua_module, nginx_binary

ROOT = Path(__file__).resolve().parents[1]
SHM = Path("/dev/shm")
MODES: tuple[Mode, ...] = ("reload", "api")


class Aborted(Exception):
    """SIGTERM, or the run's time limit."""


def _abort(signum: int, _frame: FrameType | None) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    reason = "time limit reached" if signum == signal.SIGALRM else f"signal {signal.Signals(signum).name}"
    raise Aborted(reason)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (< 60 s): fewer changes, same report")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="where the report goes")
    parser.add_argument("--workdir", type=Path, help="work folder (default: a fresh temporary one)")
    parser.add_argument("--keep-workdir", action="store_true", help="keep logs and configs after the run")
    parser.add_argument(
        "--reload-quiescence",
        nargs=2,
        type=float,
        metavar=("MIN", "MAX"),
        help="reload-mode agent's --quiescence-min/--quiescence-max (default 0.1 1.0)",
    )
    return parser.parse_args(argv)


def check_prerequisites() -> None:
    missing = []
    if nginx_binary() is None:
        missing.append("nginx")
    if not has_lua_module():
        missing.append("nginx's Lua module (libnginx-mod-http-lua)")
    if wrk_binary() is None:
        missing.append("wrk")
    if missing:
        raise SystemExit(f"bench: missing {', '.join(missing)}; run `make bootstrap`")


def instance_names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i:03d}" for i in range(count)]


def run(settings: Settings, out: Path, workdir: Path, command: str) -> Path:
    started = time.monotonic()
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    busy = machine.cpu_busy_share(0.5)
    host = machine.describe()
    say(f"{host.nproc} CPUs, load average {host.loadavg}, {busy * 100:.0f} % busy; work folder {workdir}")
    scenarios = plan(settings)
    pools = {mode: instance_names(mode[0], settings.registrations) for mode in MODES}
    hot_names = instance_names("h", settings.instances)
    runs: list[ModeRun] = []
    with contextlib.ExitStack() as stack:
        log_dir = None
        if SHM.is_dir() and os.access(SHM, os.W_OK):
            log_dir = Path(tempfile.mkdtemp(prefix="syncer-bench-", dir=SHM))
            stack.callback(shutil.rmtree, log_dir, True)
        names = [*hot_names, *(n for p in pools.values() for n in p)]
        backends = start_with_fresh_ports(
            lambda: Backends(workdir / "backends", names, log_dir), Backends.start, Backends.stop
        )
        stack.callback(backends.stop)
        say(f"{len(backends.ports)} backends up")
        hotpath = run_hotpath(settings, backends, hot_names, workdir)
        routing_rows = run_routing(settings, workdir)  # issue 10: bench/routing.py
        for mode in MODES:
            runs.append(run_mode(mode, settings, scenarios, backends, pools[mode], workdir))
        dns = run_dns_strategies(settings, scenarios, backends, workdir, log_dir)  # bench/dns_run.py
        runs += dns.runs
        backends.stop()  # flushes the request log
        seen = backends.seen()
        count_strays(dns, runs, backends)
    summaries = [summarise_mode(r, seen | dns.seen) for r in runs]
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    result = report.RunResult(
        command=command,
        date=date,
        seconds=time.monotonic() - started,
        machine=host,
        busy_before=busy,
        loadavg_end=machine.loadavg(),
        settings=settings,
        hotpath=hotpath,
        modes=summaries,
        routing=routing_rows,
        dns=dns,
    )
    result.figures["hotpath"] = plots.hotpath_figure(hotpath, out / "hotpath.png").name
    result.figures["propagation"] = plots.propagation_figure(
        summaries, out / "propagation.png", report.API_PROPAGATION_P99_MS
    ).name
    for scenario in scenarios:
        windows = [m.windows[scenario.key] for m in summaries]
        result.figures[scenario.key] = plots.scenario_figure(windows, out / f"scenario-{scenario.key}.png").name
    result.seconds = time.monotonic() - started
    return report.write(result, out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_prerequisites()
    settings = quick_settings() if args.quick else default_settings()
    if args.reload_quiescence:
        low, high = args.reload_quiescence
        if not 0 <= low <= high:
            raise SystemExit("bench: --reload-quiescence needs 0 <= MIN <= MAX")
        settings = replace(settings, reload_quiescence=(low, high))
    command = shlex.join(["python", "-m", "bench.run", *(sys.argv[1:] if argv is None else argv)])
    own_workdir = args.workdir is None
    workdir: Path = args.workdir or Path(tempfile.mkdtemp(prefix="syncer-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    # SIGINT too: a shell starts background jobs with SIGINT ignored, and `kill -INT` should still stop a run
    previous = {s: signal.signal(s, _abort) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    signal.alarm(int(settings.time_limit))
    try:
        path = run(settings, args.out, workdir, command)
    except (Aborted, KeyboardInterrupt) as exc:
        print(f"bench: aborted ({str(exc) or 'interrupted'}); every process it started was stopped", file=sys.stderr)
        return 130
    finally:
        signal.alarm(0)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if own_workdir and not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    say(f"report: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
