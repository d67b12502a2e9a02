"""``syncer compare``: the command line.

Replay: ``syncer compare LOG --primary URL --candidate URL [--secondary URL]``.
Shadow: ``syncer compare ACCESS_LOG --mirror-log MIRROR_LOG``.

Exit status: 0 no route differs beyond ``--max-diff``; 1 some route does; 2 unusable
input (nothing replayed); 130 interrupted (a partial report was written).
"""

from __future__ import annotations

import argparse
import collections
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TextIO

from syncer import config
from syncer.compare import logformat, replay, report, shadow
from syncer.compare.noise import Tally, Thresholds
from syncer.compare.targets import Target, TargetError, resolve

EXIT_OK, EXIT_DIFFERS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class InputError(ValueError):
    """Input that cannot be used: an unreadable log, nothing to replay, nowhere to write."""


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text!r}")
    return value


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage, got {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"a percentage is 0..100, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "log",
        type=Path,
        help="replay log written with the format `syncer nginx-example --replay-log` prints, "
        "or a plain list ('URI' or 'METHOD URI' per line)",
    )
    t = parser.add_argument_group("targets (URL, or consul:SERVICE[?filter=EXPR][&tag=T])")
    t.add_argument("--primary", metavar="TARGET", help="the code in production today")
    t.add_argument("--candidate", metavar="TARGET", help="the code to move traffic to")
    t.add_argument(
        "--secondary",
        metavar="TARGET",
        help="a second instance of the primary's code: its differences from the primary are noise",
    )
    t.add_argument("--consul-addr", metavar="HOST:PORT", help="Consul for consul: targets (default CONSUL_HTTP_ADDR)")
    t.add_argument("--consul-token-file", type=Path, metavar="PATH", help="file holding the ACL token")
    s = parser.add_argument_group("safety")
    s.add_argument(
        "--allow-side-effects", action="store_true", help="also replay methods other than GET and HEAD (POST ...)"
    )
    s.add_argument("--rate", type=_positive_float, default=20.0, help="logged requests per second (default 20)")
    s.add_argument("--concurrency", type=_positive_int, default=4, help="logged requests in flight (default 4)")
    s.add_argument("--timeout", type=_positive_float, default=10.0, help="per request, seconds (default 10)")
    s.add_argument("--limit", type=_positive_int, help="replay at most this many requests")
    s.add_argument(
        "--host",
        dest="hosts",
        action="append",
        default=[],
        metavar="NAME",
        help="replay only requests nginx logged for this Host (repeatable; one nginx often fronts several services)",
    )
    s.add_argument("--max-body", type=_positive_int, default=1024 * 1024, help="answer bytes kept (default 1 MiB)")
    c = parser.add_argument_group("comparison")
    c.add_argument(
        "--header",
        dest="headers",
        action="append",
        metavar="NAME",
        help="answer header to compare (repeatable; default content-type and location)",
    )
    c.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="GLOB",
        help="field to leave out, e.g. body.meta.generated_at or 'body.items[].ts' (repeatable)",
    )
    c.add_argument("--relative-threshold", type=_percent, default=20.0, help="Diffy's relative threshold, %% (20)")
    c.add_argument("--absolute-threshold", type=_percent, default=0.03, help="Diffy's absolute threshold, %% (0.03)")
    c.add_argument(
        "--max-diff",
        type=_percent,
        default=0.0,
        help="exit 1 when a route's real difference rate (or shadow status mismatch rate) is above this %% (0)",
    )
    o = parser.add_argument_group("output")
    o.add_argument("--report", type=Path, metavar="PATH", help="Markdown report (default: standard output)")
    o.add_argument("--json", type=Path, metavar="PATH", help="JSON report for machines")
    o.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar (default: on a terminal)"
    )
    m = parser.add_argument_group("shadow traffic")
    m.add_argument(
        "--mirror-log",
        type=Path,
        metavar="PATH",
        help="compare LOG (the originals) with the log nginx's mirror wrote (status and latency only)",
    )
    m.add_argument(
        "--max-latency-ratio",
        type=_positive_float,
        metavar="R",
        help="shadow: a route also differs when the candidate's p90 latency is above R times the original's",
    )


def _write(markdown: str, json_text: str, args: argparse.Namespace, out: TextIO) -> None:
    if args.report is not None:
        args.report.write_text(markdown)
    else:
        out.write(markdown)
        out.flush()
    if args.json is not None:
        args.json.write_text(json_text)


def _read(path: Path) -> logformat.Parsed:
    try:
        return logformat.read_log(path)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


def _consul_settings(args: argparse.Namespace, targets: list[str]) -> config.ConsulSettings | None:
    if not any(t.startswith("consul:") for t in targets):
        return None
    consul: dict[str, object] = {}
    if args.consul_addr:
        consul["address"] = args.consul_addr
    if args.consul_token_file:
        consul["token_file"] = str(args.consul_token_file)
    try:
        return config.load(None, overrides={"consul": consul} if consul else None).consul
    except config.ConfigError as exc:
        raise TargetError(str(exc)) from None


def _shadow(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    _check_outputs(args)
    originals, mirrors = _read(args.log), _read(args.mirror_log)
    summary = shadow.compare_logs(originals.entries, mirrors.entries, args.max_diff, args.max_latency_ratio)
    rejected = {"rejected": originals.rejected + mirrors.rejected, "rejected_examples": originals.examples[:5]}
    markdown = report.shadow_markdown(summary, args.max_diff, args.max_latency_ratio)
    _write(markdown, report.to_json(summary, rejected), args, out)
    err.write(report.shadow_summary(summary) + "\n")
    return EXIT_DIFFERS if any(r.differs for r in summary.routes) else EXIT_OK


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse up front a report that could not be written after the whole replay."""
    for path in (args.report, args.json):
        if path is not None and not path.parent.is_dir():
            raise InputError(f"cannot write {path}: {path.parent} is not a folder")


def _replay(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if not args.primary or not args.candidate:
        raise InputError("--primary and --candidate are needed (or --mirror-log for shadow traffic)")
    _check_outputs(args)
    headers = logformat.check_header_names(args.headers or ("content-type", "location"))
    specs = [s for s in (args.primary, args.candidate, args.secondary) if s]
    consul = _consul_settings(args, specs)
    primary, candidate = resolve(args.primary, consul), resolve(args.candidate, consul)
    secondary: Target | None = resolve(args.secondary, consul) if args.secondary else None
    parsed = _read(args.log)
    chosen, skipped = replay.select(parsed.entries, args.allow_side_effects, args.hosts)
    if args.limit is not None and len(chosen) > args.limit:
        skipped[f"beyond --limit {args.limit}"] += len(chosen) - args.limit
        chosen = chosen[: args.limit]
    if not chosen:
        raise InputError(f"{args.log}: nothing to replay ({parsed.rejected} lines rejected, {dict(skipped)} skipped)")
    options = replay.ReplayOptions(
        rate=args.rate,
        concurrency=args.concurrency,
        timeout=args.timeout,
        max_body=args.max_body,
        headers=headers,
        ignore=tuple(args.ignore),
        allow_side_effects=args.allow_side_effects,
    )
    tally = Tally()
    progress = replay.Progress(len(chosen), replay.progress_stream(args.progress))
    replayer = replay.Replayer(primary, candidate, secondary, options, tally, progress)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None
    try:
        outcome = replayer.run(chosen)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    # the partial report is written whole, whatever else arrives now
    previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
    try:
        return _finish(args, out, err, parsed, skipped, chosen, tally, outcome, (primary, candidate, secondary))
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous_int)


def _label(target: Target) -> str:
    return target.label if target.base_urls == (target.label,) else f"{target.label} → {', '.join(target.base_urls)}"


def _finish(
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO,
    parsed: logformat.Parsed,
    skipped: collections.Counter[str],
    chosen: list[logformat.LogEntry],
    tally: Tally,
    outcome: replay.Outcome,
    targets: tuple[Target, Target, Target | None],
) -> int:
    primary, candidate, secondary = targets
    thresholds = Thresholds(args.relative_threshold, args.absolute_threshold)

    result = report.build_replay_report(
        primary=_label(primary),
        candidate=_label(candidate),
        secondary=_label(secondary) if secondary else None,
        thresholds=thresholds,
        max_diff=args.max_diff,
        read=len(parsed.entries) + parsed.rejected,
        rejected=parsed.rejected,
        rejected_examples=tuple(parsed.examples),
        skipped=dict(skipped),
        selected=len(chosen),
        replayed=tally.replayed,
        interrupted=outcome.interrupted,
        failures=outcome.failures,
        routes=tuple(tally.verdicts(thresholds, args.max_diff)),
    )
    _write(report.replay_markdown(result), report.to_json(result), args, out)
    err.write(report.replay_summary(result) + "\n")
    if outcome.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_DIFFERS if result.differs or outcome.failures else EXIT_OK


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        if args.mirror_log is not None:
            return _shadow(args, out, err)
        return _replay(args, out, err)
    except (InputError, TargetError, logformat.LogFormatError) as exc:
        err.write(f"syncer compare: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:  # before replay started: nothing was sent, nothing to report
        err.write("syncer compare: interrupted before any request was replayed\n")
        return EXIT_INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="syncer compare",
        description="Replay logged requests against a primary, a candidate and a secondary (noise estimate) and "
        "report per route what really differs; or compare the logs of nginx's mirror (docs/compare.md).",
        epilog="Exit status: 0 no route differs beyond --max-diff; 1 some route does; 2 unusable input; "
        "130 interrupted (a partial report was written).",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
