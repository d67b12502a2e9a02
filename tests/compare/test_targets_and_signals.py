"""Targets resolved through the dev Consul with syncer's discovery code (subsets by filter
expression and tag), and Ctrl-C to a real `syncer compare` process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncer.compare import cli
from syncer.compare.sample_app import SampleApp
from syncer.devconsul.server import DevConsul
from syncer.testing.consul import ConsulWriter
from syncer.testing.ports import free_port
from syncer.testing.wait import wait_until
from tests.compare.conftest import Apps, write_list


@pytest.fixture
def consul() -> Iterator[tuple[DevConsul, ConsulWriter]]:
    server = DevConsul(port=0)
    server.start()
    writer = ConsulWriter(server.url)
    yield server, writer
    writer.close()
    server.stop()


def test_consul_subsets_resolve_to_their_instances(
    tmp_path: Path, apps: Apps, consul: tuple[DevConsul, ConsulWriter]
) -> None:
    server, writer = consul
    writer.register("web", "web-old-1", apps.primary.port, meta={"version": "1"}, tags=["v1"])
    writer.register("web", "web-old-2", apps.secondary.port, meta={"version": "1"}, tags=["v1"])
    writer.register("web", "web-new", apps.candidate.port, meta={"version": "2"}, tags=["v2"])
    # an unhealthy v2 instance must not receive traffic (it would refuse connections)
    writer.register("web", "web-new-down", free_port(), meta={"version": "2"}, tags=["v2"], status="critical")
    log = write_list(tmp_path / "requests.txt", [("GET", f"/api/orders/{n}") for n in range(8)])
    out = tmp_path / "report.json"
    code = cli.main([
        str(log), "--consul-addr", server.address, "--json", str(out), "--report", str(tmp_path / "r.md"),
        "--primary", 'consul:web?filter=Service.Meta.version == "1"',
        "--candidate", "consul:web?tag=v2",
    ])  # fmt: skip
    report = json.loads(out.read_text())
    assert code == cli.EXIT_DIFFERS
    assert report["differing_routes"] == ["GET /api/orders/{num}"]
    assert report["candidate"].endswith(f"→ http://127.0.0.1:{apps.candidate.port}")
    # primary requests spread round-robin over both v1 instances
    assert apps.primary.hit_count() == 4
    assert apps.secondary.hit_count() == 4
    assert apps.candidate.hit_count() == 8


def test_empty_subset_is_a_clear_error(
    tmp_path: Path, apps: Apps, consul: tuple[DevConsul, ConsulWriter], capsys: pytest.CaptureFixture[str]
) -> None:
    server, writer = consul
    writer.register("web", "web-old-1", apps.primary.port, meta={"version": "1"})
    log = write_list(tmp_path / "requests.txt", [("GET", "/api/users/1")])
    code = cli.main([
        str(log), "--consul-addr", server.address,
        "--primary", "consul:web", "--candidate", 'consul:web?filter=Service.Meta.version == "3"',
    ])  # fmt: skip
    assert code == cli.EXIT_USAGE
    assert 'no healthy instance matching (Service.Meta.version == "3")' in capsys.readouterr().err
    assert apps.primary.hit_count() == 0  # nothing is replayed against a half-resolved set


def test_ctrl_c_leaves_a_partial_report(tmp_path: Path) -> None:
    with SampleApp("old") as primary, SampleApp("new") as candidate:
        log = write_list(tmp_path / "requests.txt", [("GET", f"/api/orders/{n}") for n in range(200)])
        md, js = tmp_path / "report.md", tmp_path / "report.json"
        args = [
            sys.executable, "-m", "syncer", "compare", str(log), "--primary", primary.url,
            "--candidate", candidate.url, "--rate", "20", "--concurrency", "2",
            "--report", str(md), "--json", str(js),
        ]  # fmt: skip
        proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            wait_until(lambda: candidate.hit_count() >= 5, timeout=20, message="replay under way")
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == cli.EXIT_INTERRUPTED, err
    report = json.loads(js.read_text())
    assert report["interrupted"] is True
    assert 5 <= report["replayed"] < 200
    assert report["differing_routes"] == ["GET /api/orders/{num}"]
    assert "**Interrupted: partial report**" in md.read_text()
    assert b"interrupted, partial" in err
