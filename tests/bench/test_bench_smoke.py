"""CI smoke test of the benchmark: `python -m bench.run --quick` writes a complete report.

It checks that the report is complete (every section, reload, api and both DNS variants
in every scenario table, the DNS strategy's port move and counts, every figure present and
a real PNG), not what the figures say: timing on a CI machine proves nothing about any
strategy.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.load import wrk_binary
from bench.report import SECTIONS
from syncer.testing.nginx import has_lua_module, nginx_binary

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURES = {
    "hotpath.png",
    "propagation.png",
    "scenario-baseline.png",
    "scenario-steady.png",
    "scenario-rolling.png",
    "scenario-high.png",
}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.nginx,
    pytest.mark.skipif(
        nginx_binary() is None or not has_lua_module() or wrk_binary() is None,
        reason="needs nginx with the Lua module and wrk (make bootstrap)",
    ),
]


def test_quick_run_writes_a_complete_report(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"

    report = (out / "report.md").read_text()
    missing = [heading for heading in SECTIONS if heading not in report]
    assert not missing, f"sections missing from the report: {missing}"
    assert "python -m bench.run --quick" in report
    assert "**Quick run**" in report
    # one side-by-side table per scenario, reload and api, then the two DNS variants
    assert report.count("| | **reload** | **api** | **dns** | **dns-static** |") == 5  # + the DNS section's
    for target in ("propagation p99", "zero failed requests", "of static requests/s"):
        assert target in report

    linked = set(re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", report))
    assert linked == FIGURES
    for name in FIGURES:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC), name
        assert len(data) > 5_000, f"{name} is suspiciously small ({len(data)} bytes)"

    results = json.loads((out / "results.json").read_text())
    assert [m["mode"] for m in results["modes"]] == ["reload", "api", "dns", "dns-static"]
    for mode in results["modes"]:
        assert set(mode["windows"]) == {"baseline", "steady", "rolling", "high"}
    # the DNS strategy: an instance moving port and Consul going away, measured for all three;
    # requests to deregistered instances counted for every mode
    dns = results["dns"]
    assert [m["strategy"] for m in dns["moves"]] == ["reload", "api", "dns"]
    assert [o["strategy"] for o in dns["outages"]] == ["reload", "api", "dns"]
    assert all(m["requests"] > 0 for m in dns["moves"])
    assert set(dns["strays"]) == {"reload", "api", "dns", "dns-static"}
    assert dns["queries"]["dns"] > 0
    # Consul's default UDP answer limit shows through nginx; enable_truncate lifts it (not a timing figure)
    assert dns["answer_limit"]["defaults"] < dns["answer_limit"]["enable_truncate"]
