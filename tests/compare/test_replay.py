"""`syncer compare` against real HTTP backends on loopback: primary and secondary run the
old code, the candidate the new; all three put timestamps and random ids in answers."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from syncer.compare import cli
from syncer.compare.sample_app import DIFFERING_ROUTES, NOISY_ROUTES, SampleApp, traffic
from tests.compare.conftest import Apps, write_list


def _compare(tmp_path: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    out_json, out_md = tmp_path / "report.json", tmp_path / "report.md"
    code = cli.main([*args, "--rate", "1000", "--json", str(out_json), "--report", str(out_md), "--no-progress"])
    return code, json.loads(out_json.read_text()), out_md.read_text()


def _routes(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["route"]: r for r in report["routes"]}


def test_flags_exactly_the_routes_that_really_differ(tmp_path: Path, apps: Apps) -> None:
    log = write_list(tmp_path / "requests.txt", traffic())
    code, report, markdown = _compare(
        tmp_path, str(log), "--primary", apps.primary.url, "--candidate", apps.candidate.url,
        "--secondary", apps.secondary.url,
    )  # fmt: skip
    assert code == cli.EXIT_DIFFERS
    assert set(report["differing_routes"]) == set(DIFFERING_ROUTES)
    routes = _routes(report)
    for noisy in NOISY_ROUTES:  # differ on every request, but only where the secondary does too
        assert routes[noisy]["raw_rate"] == 100.0
        assert routes[noisy]["noise_rate"] == 100.0
        assert routes[noisy]["real_rate"] == 0.0
        assert not routes[noisy]["differs"]
    assert routes["GET /static/{num}.txt"]["raw_rate"] == 0.0
    assert routes["GET /api/orders/{num}"]["real_rate"] == 100.0
    assert routes["GET /api/search"]["real_rate"] == 50.0  # only queries with a digit changed
    real = {f["name"] for f in routes["GET /api/orders/{num}"]["fields"] if f["real"]}
    assert real == {"body.total"}
    example = routes["GET /api/orders/{num}"]["examples"][0]
    assert example["primary"].startswith('"')
    assert not example["candidate"].startswith('"')
    assert "**2 of" in markdown
    assert "`GET /api/orders/{num}` | 10 | 100.0% | 100.0% | 100.0% | **DIFFERS**" in markdown


def test_without_a_secondary_noise_looks_like_a_difference(tmp_path: Path, apps: Apps) -> None:
    log = write_list(tmp_path / "requests.txt", traffic())
    code, report, _ = _compare(tmp_path, str(log), "--primary", apps.primary.url, "--candidate", apps.candidate.url)
    assert code == cli.EXIT_DIFFERS
    assert set(report["differing_routes"]) == {*DIFFERING_ROUTES, *NOISY_ROUTES}
    # ...unless the noisy fields are ignored by name
    code, report, _ = _compare(
        tmp_path, str(log), "--primary", apps.primary.url, "--candidate", apps.candidate.url,
        "--ignore", "body.served_at", "--ignore", "body.trace_id", "--ignore", "body.items[].ts",
        "--ignore", "body",
    )  # fmt: skip
    assert set(report["differing_routes"]) == set(DIFFERING_ROUTES)


def test_max_diff_gates_the_exit_status(tmp_path: Path, apps: Apps) -> None:
    log = write_list(tmp_path / "requests.txt", traffic())
    targets = ["--primary", apps.primary.url, "--candidate", apps.candidate.url, "--secondary", apps.secondary.url]
    code, report, _ = _compare(tmp_path, str(log), *targets, "--max-diff", "60")
    assert code == cli.EXIT_DIFFERS
    assert report["differing_routes"] == ["GET /api/orders/{num}"]
    code, report, _ = _compare(tmp_path, str(log), *targets, "--max-diff", "100")
    assert code == cli.EXIT_OK
    assert report["differing_routes"] == []
    same = write_list(tmp_path / "same.txt", [("GET", "/api/users/1"), ("GET", "/static/1.txt")] * 3)
    code, report, _ = _compare(tmp_path, str(same), *targets)
    assert code == cli.EXIT_OK
    assert not report["differs"]


def test_side_effects_only_when_allowed(tmp_path: Path, apps: Apps) -> None:
    log = write_list(tmp_path / "requests.txt", [("GET", "/api/users/1"), ("POST", "/api/orders"), ("DELETE", "/x")])
    targets = ["--primary", apps.primary.url, "--candidate", apps.candidate.url, "--secondary", apps.secondary.url]
    _, report, markdown = _compare(tmp_path, str(log), *targets)
    assert report["replayed"] == 1
    assert all(method == "GET" for app in apps.all() for method, _, _ in app.hits)
    assert "POST: side effects (use --allow-side-effects)" in markdown
    _, report, _ = _compare(tmp_path, str(log), *targets, "--allow-side-effects")
    assert report["replayed"] == 3
    assert all(any(method == "POST" for method, _, _ in app.hits) for app in apps.all())


def test_rate_limit_and_bounded_concurrency(tmp_path: Path) -> None:
    with SampleApp("old", delay=0.05) as primary, SampleApp("new", delay=0.05) as candidate:
        log = write_list(tmp_path / "requests.txt", [("GET", f"/api/users/{n}") for n in range(12)])
        targets = ["--primary", primary.url, "--candidate", candidate.url, "--no-progress", "--ignore", "body.*"]
        report = str(tmp_path / "r.md")
        started = time.monotonic()
        assert cli.main([str(log), *targets, "--rate", "1000", "--concurrency", "3", "--report", report]) == 0
        assert 2 <= primary.max_in_flight <= 3
        assert candidate.max_in_flight <= 3
        assert time.monotonic() - started < 2.0
        started = time.monotonic()
        assert cli.main([str(log), *targets, "--rate", "20", "--concurrency", "8", "--report", report]) == 0
        assert time.monotonic() - started >= 11 / 20  # 12 starts at 20/s: 11 gaps of 50 ms


def test_unusable_input_exits_2(tmp_path: Path, apps: Apps, capsys: Any) -> None:
    log = write_list(tmp_path / "requests.txt", [("POST", "/only/posts")])
    targets = ["--primary", apps.primary.url, "--candidate", apps.candidate.url]
    assert cli.main([str(log), *targets]) == cli.EXIT_USAGE
    assert "nothing to replay" in capsys.readouterr().err
    assert cli.main([str(tmp_path / "missing.log"), *targets]) == cli.EXIT_USAGE
    assert cli.main([str(log), "--primary", apps.primary.url]) == cli.EXIT_USAGE
    assert cli.main([str(log), *targets, "--header", "Host"]) == cli.EXIT_USAGE
    assert cli.main([str(log), *targets, "--allow-side-effects", "--json", "/nonexistent/dir/r.json"]) == 2
    assert apps.primary.hit_count() == 0  # refused before anything was sent
