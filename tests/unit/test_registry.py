"""The sink registry: a new endpoint dialect is one module plus one entry, and nothing
outside the registry asks which mode is running."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

import syncer
from syncer import config
from syncer.agent import Agent
from syncer.config import ObserveSettings, ServiceSelection, Settings
from syncer.model import Desired
from syncer.sinks import registry
from syncer.sinks.base import ApplyResult, Sink


class DyupsSink:
    """What a Tengine dyups dialect would look like to the agent."""

    mode = "dyups"

    def apply(self, desired: Desired, *, reconcile: bool = False) -> ApplyResult:
        return ApplyResult("pushed")

    def needs_reconcile(self) -> bool:
        return False

    def preview(self, desired: Desired) -> str:
        return ""

    def close(self) -> None:
        pass


@pytest.fixture
def dyups(monkeypatch: pytest.MonkeyPatch) -> registry.Dialect:
    entry = registry.Dialect(
        name="dyups",
        summary="POST the whole server list to Tengine's dyups endpoint",
        section="api",
        factory=lambda s: DyupsSink(),
        accepts_hostnames=False,
        quiescence=(0.2, 1.0),
        apply_budget=lambda s: 10.0,
        check=lambda s: s,
    )
    monkeypatch.setitem(registry.DIALECTS, "dyups", entry)
    return entry


def test_the_shipped_dialects_build_their_sinks(tmp_path: Path) -> None:
    token = tmp_path / "admin.token"
    token.write_text("t0ken\n")
    token.chmod(0o600)
    for name in ("reload", "api"):
        settings = config.load(None, env={}, overrides={"mode": name, "api": {"token_file": str(token)}})
        sink: Sink = registry.make_sink(settings)
        try:
            assert sink.mode == name
        finally:
            sink.close()
    assert registry.dialect("reload").accepts_hostnames
    assert not registry.dialect("api").accepts_hostnames


def test_a_new_dialect_is_one_entry(dyups: registry.Dialect) -> None:
    settings = config.load(None, env={}, overrides={"mode": "dyups", "services": {"names": ["web"]}})
    assert settings.mode == "dyups"
    assert settings.quiescence.resolved("dyups") == (0.2, 1.0)
    agent = Agent(replace(settings, observe=ObserveSettings(listen="")))
    try:
        assert isinstance(agent._sink, DyupsSink)
        assert agent._rules().allow_hostnames is False
    finally:
        agent._sink.close()


def test_an_unknown_mode_is_refused_with_the_known_ones() -> None:
    with pytest.raises(config.ConfigError, match="must be one of reload, api"):
        config.load(None, env={}, overrides={"mode": "plus"})


def test_no_mode_checks_outside_the_registry() -> None:
    """The agent, config, planning and sinks ask the registry, never `mode == "..."`."""
    root = Path(syncer.__file__).parent
    checked = [root / "agent.py", root / "config.py", root / "once.py", *root.glob("planning/*.py")]
    checked += [p for p in root.glob("sinks/*.py") if p.name != "registry.py"]
    pattern = re.compile(r"""mode\s*[!=]=\s*["']""")
    offenders = [f"{p.name}:{n}" for p in checked for n, line in enumerate(p.read_text().splitlines(), 1)
                 if pattern.search(line)]  # fmt: skip
    assert offenders == []


def test_selection_is_not_part_of_the_dialect() -> None:
    assert Settings(services=ServiceSelection(names=("web",))).mode in registry.names()
