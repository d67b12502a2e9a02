"""The nginx side, with a real nginx configured by `syncer nginx-example`: the replay log it
writes is what `syncer compare` replays; the mirror shadows traffic to the candidate with
tight timeouts and logs the candidate's status and latency under the same request id."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from syncer.compare import cli
from syncer.compare.logformat import read_log
from syncer.compare.sample_app import DIFFERING_ROUTES, SampleApp, traffic
from syncer.testing.nginx import NginxProcess, has_lua_module
from syncer.testing.wait import wait_until
from tests.compare.conftest import Apps, needs_nginx, start_example_nginx

pytestmark = needs_nginx

BODY = '{"note": "a \\"quoted\\" \\\\ line\\nnext é ✓"}'.encode()


def _lines(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def _send(url: str, mix: list[tuple[str, str]]) -> list[float]:
    """Each request through nginx on one keep-alive connection; the latency of each."""
    latencies = []
    with requests.Session() as session:
        for method, uri in mix:
            started = time.monotonic()
            data = BODY if method == "POST" else None
            headers = {"Host": "web", "Accept": "application/json", "Content-Type": "application/json"}
            response = session.request(method, url + uri, data=data, headers=headers, timeout=10)
            latencies.append(time.monotonic() - started)
            assert response.status_code < 500, (method, uri, response.status_code)
    return latencies


def test_compare_replays_the_log_nginx_wrote(tmp_path: Path, apps: Apps) -> None:
    stack = start_example_nginx(tmp_path, apps.primary.port, "--replay-log-body", "4096")
    try:
        mix = traffic()
        _send(stack.url, mix)
        wait_until(lambda: _lines(stack.replay_log) == len(mix), message="nginx logged every request")
    finally:
        stack.nginx.stop()
    parsed = read_log(stack.replay_log)
    assert parsed.rejected == 0, parsed.examples
    assert len({e.id for e in parsed.entries}) == len(mix)
    assert [(e.method, e.uri) for e in parsed.entries] == mix
    posted = [e for e in parsed.entries if e.method == "POST"]
    assert posted[0].body == BODY  # quotes, backslash, newline and UTF-8 survive escape=json
    assert ("accept", "application/json") in posted[0].headers

    out = tmp_path / "report.json"
    targets = ["--primary", apps.primary.url, "--candidate", apps.candidate.url, "--secondary", apps.secondary.url]
    args = [*targets, "--allow-side-effects", "--host", "web", "--json", str(out), "--rate", "1000"]
    code = cli.main([str(stack.replay_log), *args])
    report = json.loads(out.read_text())
    assert code == cli.EXIT_DIFFERS
    assert set(report["differing_routes"]) == set(DIFFERING_ROUTES)
    assert report["replayed"] == len(mix)
    assert ("POST", "/api/orders", BODY) in apps.candidate.hits  # the logged body, byte for byte


def _shadow(tmp_path: Path, replay_log: Path, mirror_log: Path) -> tuple[int, dict[str, Any]]:
    out = tmp_path / "shadow.json"
    code = cli.main([str(replay_log), "--mirror-log", str(mirror_log), "--json", str(out)])
    return code, json.loads(out.read_text())


def test_slow_candidate_does_not_hold_up_the_original(tmp_path: Path) -> None:
    with SampleApp("old") as primary, SampleApp("new", delay=2.0) as slow:
        stack = start_example_nginx(tmp_path, primary.port, "--mirror", slow.url, "--mirror-timeout", "200ms")
        try:
            mix = [("GET", f"/api/users/{n}") for n in range(6)]
            latencies = _send(stack.url, mix)
            wait_until(lambda: _lines(stack.replay_log) == len(mix), message="nginx logged every request")
        finally:
            stack.nginx.stop()
        # one keep-alive connection: a request waits for the previous one's mirror, but
        # never much longer than the mirror's timeout (200 ms), while the candidate takes 2 s
        assert max(latencies) < 1.0, latencies
        assert slow.hit_count() > 0  # the mirror did reach the candidate (a busy machine may drop a connect)
    originals, mirrors = read_log(stack.replay_log).entries, read_log(stack.mirror_log).entries
    assert [m.id for m in mirrors] == [o.id for o in originals]
    assert {m.status for m in mirrors} == {504}
    assert all(m.upstream_time is not None and 0.15 <= m.upstream_time < 0.8 for m in mirrors)
    code, report = _shadow(tmp_path, stack.replay_log, stack.mirror_log)
    assert code == cli.EXIT_DIFFERS
    (route,) = report["routes"]
    assert route["mirror_timeouts"] == len(mix)
    assert route["original_status"] == {"200": len(mix)}


def test_shadow_logs_compare_status_and_latency(tmp_path: Path) -> None:
    with SampleApp("old") as primary, SampleApp("new") as candidate:
        # a generous timeout: this test is about statuses, not timeouts (the machine may be busy)
        stack = start_example_nginx(tmp_path, primary.port, "--mirror", candidate.url, "--mirror-timeout", "10s")
        try:
            mix = traffic()
            safe = [(m, u) for m, u in mix if m in ("GET", "HEAD")]
            _send(stack.url, mix)
            # nginx logs a request only once its mirror has ended: the mirror log is complete now
            wait_until(lambda: _lines(stack.replay_log) == len(mix), message="nginx logged every request")
        finally:
            stack.nginx.stop()
        assert all(method != "POST" for method, _, _ in candidate.hits)  # no side effects on the candidate
    code, report = _shadow(tmp_path, stack.replay_log, stack.mirror_log)
    assert code == cli.EXIT_DIFFERS
    assert report["joined"] == len(safe)
    assert _lines(stack.mirror_log) == len(safe)
    differs = {r["route"]: r for r in report["routes"] if r["differs"]}
    assert set(differs) == {"GET /api/search"}  # 404 for queries with a digit; bodies are not seen
    assert differs["GET /api/search"]["mirror_status"] == {"200": 5, "404": 5}
    assert all(r["mirror_latency"]["count"] == r["requests"] for r in report["routes"])


def test_mirror_share_samples_by_request_id(tmp_path: Path) -> None:
    with SampleApp("old") as primary, SampleApp("old") as candidate:
        stack = start_example_nginx(
            tmp_path, primary.port, "--mirror", candidate.url, "--mirror-share", "50", "--mirror-timeout", "10s"
        )
        try:
            mix = [("GET", f"/api/users/{n}") for n in range(60)]
            _send(stack.url, mix)
            wait_until(lambda: _lines(stack.replay_log) == len(mix), message="nginx logged every request")
            assert candidate.hit_count() == _lines(stack.mirror_log)  # sampled-out mirrors never left nginx
        finally:
            stack.nginx.stop()
    mirrored = read_log(stack.mirror_log).entries
    # P(fewer than 10 or more than 50 of 60 at 50 %) < 1e-7
    assert 10 <= len(mirrored) <= 50
    assert {m.id for m in mirrored} <= {o.id for o in read_log(stack.replay_log).entries}
    code, report = _shadow(tmp_path, stack.replay_log, stack.mirror_log)
    assert code == cli.EXIT_OK
    assert report["joined"] == len(mirrored)


@pytest.mark.parametrize("mode", ["reload", "api"])
def test_printed_config_with_every_option_passes_nginx_t(tmp_path: Path, mode: str) -> None:
    if mode == "api" and not has_lua_module():
        pytest.skip("api mode needs nginx's Lua module")
    token = tmp_path / "admin.token"
    token.write_text("t0ken\n")
    (tmp_path / "upstream.conf").write_text("upstream web { server 127.0.0.1:9; }\n")
    args = [
        sys.executable, "-m", "syncer", "nginx-example", "--mode", mode, "--listen", "127.0.0.1:1",
        "--admin-listen", "127.0.0.1:2", "--token-file", str(token), "--snapshot-file", str(tmp_path / "s.json"),
        "--upstream-conf", str(tmp_path / "upstream.conf"), "--replay-log", "logs/replay.log",
        "--replay-log-header", "X-Tenant", "--replay-log-body", "2048", "--mirror", "http://[::1]:9",
        "--mirror-share", "2.5", "--mirror-timeout", "1s",
    ]  # fmt: skip
    printed = subprocess.run(args, capture_output=True, text=True, check=True, timeout=30).stdout
    assert '"x-tenant":"$http_x_tenant"' in printed
    nginx = NginxProcess(tmp_path / "nginx", printed)
    result = nginx.test_config()
    assert result.returncode == 0, result.stderr
