"""Knobs of the scale scenario: the default run and the ``--quick`` one."""

from __future__ import annotations

from dataclasses import dataclass, replace

from bench.scale_stack import Mode


@dataclass(frozen=True)
class ScaleSettings:
    quick: bool
    sizes: tuple[int, ...] = (100, 500, 2000)
    modes: tuple[Mode, ...] = ("reload", "api")
    instances: int = 3
    """Passing instances per service."""
    max_connections: int = 16
    """The agent's ``consul.max_connections`` (its default)."""
    changes: int = 40
    """Measured changes per (mode, N): half registrations, half check flips."""
    change_gap: float = 0.5
    """Quiet time after a change has reached nginx before the next (its Consul reads finish)."""
    settle_seconds: float = 3.0
    """After the initial sync, before the idle window (the start-up reads drain)."""
    idle_seconds: float = 30.0
    """The quiet window for idle CPU and idle Consul requests."""
    initial_sync_timeout: float = 120.0
    """Past this the run records the initial sync as missed (with how far it got) and goes on."""
    change_timeout: float = 30.0
    reload_quiescence: tuple[float, float] = (0.1, 1.0)
    """Reload-mode agent's --quiescence-min/--quiescence-max (the reload-vs-api bench's values)."""
    api_quiescence: tuple[float, float] = (0.0, 0.0)
    time_limit: float = 1800.0

    def quiescence(self, mode: Mode) -> tuple[float, float]:
        return self.reload_quiescence if mode == "reload" else self.api_quiescence


def default_scale_settings() -> ScaleSettings:
    return ScaleSettings(quick=False)


def quick_scale_settings() -> ScaleSettings:
    """N = 100 only, short windows: checks that every piece works (the CI smoke test)."""
    return replace(
        ScaleSettings(quick=True),
        sizes=(100,),
        changes=6,
        change_gap=0.2,
        settle_seconds=1.0,
        idle_seconds=3.0,
        initial_sync_timeout=60.0,
        time_limit=240.0,
    )
