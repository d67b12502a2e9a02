"""Fixtures for `syncer compare`: the sample API in its old and new versions on loopback,
and a real nginx configured by `syncer nginx-example` (printed by the real CLI)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from syncer.compare.sample_app import SampleApp
from syncer.testing.nginx import NginxProcess, nginx_binary
from syncer.testing.ports import free_port

needs_nginx = pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (make bootstrap)")


@dataclass
class Apps:
    primary: SampleApp
    secondary: SampleApp
    candidate: SampleApp

    def all(self) -> tuple[SampleApp, SampleApp, SampleApp]:
        return self.primary, self.secondary, self.candidate


@pytest.fixture
def apps() -> Iterator[Apps]:
    """Primary and secondary run the old code, the candidate the new."""
    started = Apps(SampleApp("old").start(), SampleApp("old").start(), SampleApp("new").start())
    yield started
    for app in started.all():
        app.stop()


def write_list(path: Path, requests: list[tuple[str, str]]) -> Path:
    path.write_text("".join(f"{method} {uri}\n" for method, uri in requests))
    return path


@dataclass
class ExampleNginx:
    nginx: NginxProcess
    port: int
    replay_log: Path
    mirror_log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_example_nginx(root: Path, upstream_port: int, *extra: str) -> ExampleNginx:
    """`syncer nginx-example --mode reload --replay-log ...` run by a real nginx, proxying
    service ``web`` to ``upstream_port``."""
    port = free_port()
    prefix = root / "nginx"
    (prefix / "conf").mkdir(parents=True, exist_ok=True)
    upstream = prefix / "conf" / "upstream.conf"
    upstream.write_text(f"upstream web {{\n    server 127.0.0.1:{upstream_port};\n    keepalive 8;\n}}\n")
    replay_log, mirror_log = prefix / "logs" / "replay.log", prefix / "logs" / "mirror.log"
    args = [
        sys.executable, "-m", "syncer", "nginx-example", "--mode", "reload",
        "--listen", f"127.0.0.1:{port}", "--upstream-conf", str(upstream), "--worker-processes", "1",
        "--access-log", "", "--replay-log", str(replay_log), "--mirror-log", str(mirror_log), *extra,
    ]  # fmt: skip
    printed = subprocess.run(
        args,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    nginx = NginxProcess(prefix, printed)
    nginx.start(wait_port=port)
    return ExampleNginx(nginx, port, replay_log, mirror_log)
