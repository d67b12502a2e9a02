"""CI smoke test of the scale scenario: `python -m bench.scale --quick` writes a complete
report (the table with every mode, the plot as a real PNG, the JSON with every figure).
It checks completeness and consistency, not the timings: a busy CI machine proves
nothing about them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from syncer.testing.nginx import has_lua_module, nginx_binary

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.nginx,
    pytest.mark.skipif(
        nginx_binary() is None or not has_lua_module(), reason="needs nginx with the Lua module (make bootstrap)"
    ),
]


def test_quick_scale_run_writes_a_complete_report(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--quick", "--changes", "2", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = (out / "scale.md").read_text()
    for heading in ("## Run", "## Figures", "## Targets", "## What Consul pays", "## Method"):
        assert heading in report
    assert "| figure | reload N=100 | api N=100 |" in report
    assert (out / "scale.png").read_bytes().startswith(PNG_MAGIC)
    data = json.loads((out / "scale.json").read_text())
    assert [(r["mode"], r["services"]) for r in data["results"]] == [("reload", 100), ("api", 100)]
    for r in data["results"]:
        assert len(r["changes"]) == 2
        assert {c["kind"] for c in r["changes"]} == {"register", "check flip"}
        assert all(c["propagation_ms"] > 0 and c["consul_requests"] > 0 for c in r["changes"])
        assert 0 < r["connections_peak"] <= r["max_connections"]
        assert r["initial_sync_s"] > 0
        assert r["rss_peak_mib"] > 0
        assert r["threads_peak"] > 0
        assert r["change_cpu_ms"] > 0
        assert r["rejected_connections"] == 0
