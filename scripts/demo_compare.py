"""Before moving traffic: replay real requests against old and new, and show what differs.

Seed 003's migration step, end to end on loopback: an "old" API (primary) and a second
copy of it (secondary), a "new" API (candidate) that differs on two routes, a real nginx
configured by `syncer nginx-example --replay-log ... --mirror ...` in front of the old
one, some traffic through nginx, then `syncer compare` on the log nginx wrote (replay
with Diffy-style noise subtraction) and on the mirror's log (shadow traffic). Everything
is stopped and removed at the end.

Runnable (`python scripts/demo_compare.py`) and importable (`run(out) -> int`, 0 when the
demo went as designed: the two changed routes flagged, no noisy route flagged).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TextIO

import requests

from syncer.compare.sample_app import DIFFERING_ROUTES, SampleApp, traffic
from syncer.testing.nginx import NginxProcess, nginx_binary
from syncer.testing.ports import free_port
from syncer.testing.wait import wait_until

SYNCER = [sys.executable, "-m", "syncer"]


def _say(out: TextIO, text: str) -> None:
    out.write(f"\n==> {text}\n")
    out.flush()


def _lines(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def _table(markdown: str) -> str:
    """The report up to its per-route details: header, verdict and the route table."""
    return markdown.split("\n## ", 1)[0].rstrip() + "\n"


def _nginx_conf(work: Path, port: int, primary: SampleApp, candidate: SampleApp) -> tuple[str, Path, Path]:
    upstream = work / "nginx" / "conf" / "upstream.conf"
    upstream.parent.mkdir(parents=True, exist_ok=True)
    upstream.write_text(f"upstream web {{\n    server 127.0.0.1:{primary.port};\n    keepalive 8;\n}}\n")
    replay_log, mirror_log = work / "nginx" / "logs" / "replay.log", work / "nginx" / "logs" / "mirror.log"
    args = [
        *SYNCER, "nginx-example", "--mode", "reload", "--listen", f"127.0.0.1:{port}",
        "--upstream-conf", str(upstream), "--worker-processes", "1",
        "--replay-log", str(replay_log), "--replay-log-body", "4096",
        "--mirror", candidate.url, "--mirror-share", "50", "--mirror-log", str(mirror_log),
        "--mirror-timeout", "300ms",
    ]  # fmt: skip
    conf = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout
    return conf, replay_log, mirror_log


def run(out: TextIO) -> int:
    if nginx_binary() is None:
        out.write("demo_compare: nginx is not installed (make bootstrap)\n")
        return 1
    with tempfile.TemporaryDirectory(prefix="syncer-compare-demo-") as tmp, SampleApp("old") as primary:
        work = Path(tmp)
        with SampleApp("old") as secondary, SampleApp("new") as candidate:
            _say(out, "old API (primary + secondary) and new API (candidate) on loopback")
            out.write(f"    primary {primary.url}  secondary {secondary.url}  candidate {candidate.url}\n")
            port = free_port()
            conf, replay_log, mirror_log = _nginx_conf(work, port, primary, candidate)
            nginx = NginxProcess(work / "nginx", conf)
            nginx.start(wait_port=port)
            try:
                _say(out, "nginx (syncer nginx-example --replay-log ... --mirror candidate --mirror-share 50)")
                mix = traffic()
                with requests.Session() as session:
                    for method, uri in mix:
                        body = b'{"item": 1}' if method == "POST" else None
                        session.request(
                            method, f"http://127.0.0.1:{port}{uri}", data=body, timeout=10,
                            headers={"Host": "web", "Accept": "application/json", "Content-Type": "application/json"},
                        )  # fmt: skip
                wait_until(lambda: _lines(replay_log) == len(mix), timeout=10, message="nginx logged every request")
                out.write(f"    {len(mix)} requests through nginx; {_lines(mirror_log)} of them mirrored\n")
                out.write(f"    a replay log line: {replay_log.read_text().splitlines()[0][:150]}...\n")
            finally:
                nginx.stop()

            _say(out, "syncer compare replay.log --primary ... --candidate ... --secondary ...")
            report_md, report_json = work / "report.md", work / "report.json"
            compare = [
                *SYNCER, "compare", str(replay_log), "--primary", primary.url, "--candidate", candidate.url,
                "--secondary", secondary.url, "--rate", "200", "--report", str(report_md),
                "--json", str(report_json), "--no-progress",
            ]  # fmt: skip
            replay = subprocess.run(compare, capture_output=True, text=True, timeout=120, check=False)
            out.write(_table(report_md.read_text()))
            out.write(replay.stderr)
            out.write(f"    exit status {replay.returncode}: ")
            out.write("the candidate is not ready for these routes\n" if replay.returncode == 1 else "\n")

            _say(out, "syncer compare replay.log --mirror-log mirror.log (shadow traffic: status and latency)")
            shadow_args = ["--mirror-log", str(mirror_log), "--report", str(work / "shadow.md")]
            shadow = subprocess.run(
                [*SYNCER, "compare", str(replay_log), *shadow_args],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            out.write(shadow.stderr)
        flagged = set(json.loads(report_json.read_text())["differing_routes"])
    as_designed = replay.returncode == 1 and flagged == set(DIFFERING_ROUTES)
    _say(out, "as designed" if as_designed else f"unexpected: flagged {sorted(flagged)}")
    return 0 if as_designed else 1


if __name__ == "__main__":
    raise SystemExit(run(sys.stdout))
