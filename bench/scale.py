"""``python -m bench.scale``: the scale scenario (``make bench-scale``).

For N = 100, 500 and 2,000 services x 3 passing instances, in reload and api mode, a
fresh dev Consul, real nginx and the agent as a subprocess selecting the services by
tag; records connections to Consul, threads, memory, idle CPU, Consul requests idle and
per change, the initial sync and the propagation of single changes. Writes ``scale.md``,
``scale.json`` and ``scale.png`` to ``--out`` (default ``bench/results``), and stops every
process it started, also on an error, Ctrl-C, SIGTERM or the time limit.
"""

from __future__ import annotations

import argparse
import random
import shlex
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from bench import machine, procfs
from bench.mode_run import say
from bench.run import Aborted, _abort
from bench.scale_report import ScaleRun, load, write
from bench.scale_run import run_scale
from bench.scale_settings import ScaleSettings, default_scale_settings, quick_scale_settings
from bench.scale_stack import Mode
from syncer.testing.nginx import has_lua_module, nginx_binary

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="N = 100 only, short windows (the CI smoke test)")
    parser.add_argument("--sizes", type=int, nargs="+", metavar="N", help="numbers of services (default 100 500 2000)")
    parser.add_argument("--modes", nargs="+", choices=("reload", "api"), help="modes (default both)")
    parser.add_argument("--changes", type=int, help="measured changes per mode and N (default 40)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="where the report goes")
    parser.add_argument("--workdir", type=Path, help="work folder (default: a fresh temporary one)")
    parser.add_argument("--keep-workdir", action="store_true", help="keep logs and configs after the run")
    parser.add_argument("--seed", type=int, default=8, help="which services the changes touch")
    parser.add_argument(
        "--report-only", type=Path, metavar="JSON", help="re-render the report from a scale.json, measure nothing"
    )
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> ScaleSettings:
    settings = quick_scale_settings() if args.quick else default_scale_settings()
    if args.sizes:
        if any(n < 1 for n in args.sizes):
            raise SystemExit("bench.scale: --sizes must be positive")
        settings = replace(settings, sizes=tuple(args.sizes))
    if args.modes:
        modes: tuple[Mode, ...] = tuple(args.modes)
        settings = replace(settings, modes=modes)
    if args.changes is not None:
        if args.changes < 2:
            raise SystemExit("bench.scale: --changes needs at least 2 (one of each kind)")
        settings = replace(settings, changes=args.changes)
    return settings


def run(settings: ScaleSettings, out: Path, workdir: Path, command: str, seed: int) -> Path:
    started = time.monotonic()
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    busy = machine.cpu_busy_share(0.5)
    cpu0 = procfs.machine_cpu()
    host = machine.describe()
    say(f"{host.nproc} CPUs, load average {host.loadavg}, {busy * 100:.0f} % busy; work folder {workdir}")
    result = ScaleRun(command, date, 0.0, host, busy, "", settings)
    rng = random.Random(seed)
    path = out / "scale.md"
    for count in settings.sizes:
        for mode in settings.modes:
            result.results.append(run_scale(mode, count, settings, workdir / f"{mode}-{count}", rng))
            # the report so far, after each run: an aborted run still leaves what it measured
            result.others_busy = cpu0.others_share(procfs.machine_cpu())
            result.loadavg_end = machine.loadavg()
            result.seconds = time.monotonic() - started
            path = write(result, out)
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only is not None:
        say(f"report: {write(load(args.report_only), args.out)}")
        return 0
    if nginx_binary() is None or not has_lua_module():
        raise SystemExit("bench.scale: needs nginx with the Lua module; run `make bootstrap`")
    settings = settings_from(args)
    command = shlex.join(["python", "-m", "bench.scale", *(sys.argv[1:] if argv is None else argv)])
    own_workdir = args.workdir is None
    workdir: Path = args.workdir or Path(tempfile.mkdtemp(prefix="syncer-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    previous = {s: signal.signal(s, _abort) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    signal.alarm(int(settings.time_limit))
    try:
        path = run(settings, args.out, workdir, command, args.seed)
    except (Aborted, KeyboardInterrupt) as exc:
        print(
            f"bench.scale: aborted ({str(exc) or 'interrupted'}); every process it started was stopped", file=sys.stderr
        )
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
