"""examples/prometheus-alerts.yml: valid rule groups whose every expression names only series
a real agent exports (its /metrics scraped here), each alert listed in the README; and the
agent's /metrics carries process metrics and syncer_build_info, without `_created` series."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.conftest import StartAgent
from tests.stack import metrics_url

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "examples" / "prometheus-alerts.yml"
README = ROOT / "README.md"

# Series Prometheus itself adds to every scrape, not the agent.
SCRAPE_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}


def referenced_series(expr: str) -> set[str]:
    """Metric names in a PromQL expression: strings, label matchers, ranges and grouping
    clauses removed; what is left that is not a function, keyword or number."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*(\s*\()?", text):
        word = match.group(0).rstrip("( \t\n")
        if match.group(1) or word in PROMQL_WORDS:
            continue  # a function call or a keyword
        names.add(word)
    return names


def exported_series(exposition: str) -> set[str]:
    """Every series name a scrape may hold: sample names, plus the `_bucket`/`_sum`/`_count`
    of each histogram and summary (present even before their first observation)."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind in ("histogram", "summary"):
                names |= {f"{name}_sum", f"{name}_count"}
            if kind == "histogram":
                names.add(f"{name}_bucket")
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(RULES.read_text())
    (group,) = loaded["groups"]
    assert group["name"] == "syncer"
    found: list[dict[str, Any]] = group["rules"]
    return found


def test_parser_finds_what_an_expression_names() -> None:
    """The extraction itself, on the shapes the rules use (so the check below can fail)."""
    expr = (
        'increase(x_total{outcome=~"a|b"}[15m]) > 0 unless on (instance) '
        "sum by (instance, le) (rate(y_bucket[5m])) > 0 and z / w"
    )
    assert referenced_series(expr) == {"x_total", "y_bucket", "z", "w"}


def test_rules_are_well_formed_and_in_the_readme(rules: list[dict[str, Any]]) -> None:
    readme = README.read_text()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in ("page", "warning"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        if "for" in rule:
            assert re.fullmatch(r"[0-9]+[smh]", rule["for"]), rule["alert"]
        assert f"`{rule['alert']}`" in readme, f"README does not list {rule['alert']}"


def test_every_expression_names_series_a_running_agent_exports(
    tmp_path: Path, start_agent: StartAgent, rules: list[dict[str, Any]]
) -> None:
    """Scrape a real agent (Consul unreachable is enough: every family is registered at
    start) and check each rule's series against it."""
    agent = start_agent(
        [
            "--consul-addr",
            "127.0.0.1:1",
            "--service",
            "web",
            "--output",
            str(tmp_path / "upstream.conf"),
            "--metrics-listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ]
    )
    exposition = requests.get(f"{metrics_url(agent)}/metrics", timeout=5).text
    exported = exported_series(exposition) | SCRAPE_SERIES
    for rule in rules:
        named = referenced_series(rule["expr"])
        assert named, f"{rule['alert']} names no series"
        assert named <= exported, f"{rule['alert']}: {sorted(named - exported)} not exported by the agent"

    # what the alerts and an operator's dashboards rely on besides syncer's own families
    for series in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "python_info"):
        assert series in exported, series
    build = re.search(r"^syncer_build_info\{(.*)\} 1\.0$", exposition, re.M)
    assert build is not None
    assert 'version="' in build.group(1)
    assert 'python="' in build.group(1)
    assert "_created" not in exposition
