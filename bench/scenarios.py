"""The scenarios, as scripts of Consul writes: identical for both modes.

- baseline: load only, no change (the reference for throughput and errors);
- steady churn: one change a second (a new instance registers, then the oldest leaves);
- rolling deploy: every instance replaced, 20 changes in 2 s (register a new one, then
  deregister an old one, every 100 ms), repeated;
- high churn: ten changes a second.

Each runs under the same wrk load plus the long-lived connections; load starts
``lead_seconds`` before the first write and lasts until ``tail_seconds`` after the last.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.churn import Op
from bench.settings import Settings


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    what: str
    ops: tuple[Op, ...]
    load_seconds: float
    churn_starts: float  # seconds after the load starts

    @property
    def changes(self) -> int:
        return len(self.ops)


def alternating(count: int, interval: float) -> tuple[Op, ...]:
    """register, deregister, register... one every ``interval``: the set stays at N or N+1."""
    return tuple(Op(i * interval, "register" if i % 2 == 0 else "deregister") for i in range(count))


def rolling(deploys: int, instances: int, span: float, gap: float) -> tuple[Op, ...]:
    step = span / (2 * instances)
    ops = []
    for deploy in range(deploys):
        base = deploy * (span + gap)
        for j in range(instances):
            ops.append(Op(base + 2 * j * step, "register"))
            ops.append(Op(base + (2 * j + 1) * step, "deregister"))
    return tuple(ops)


def _scenario(key: str, title: str, what: str, ops: tuple[Op, ...], s: Settings) -> Scenario:
    span = ops[-1].at if ops else 0.0
    # wrk takes whole seconds; the tail gets the rounding
    return Scenario(key, title, what, ops, math.ceil(s.lead_seconds + span + s.tail_seconds), s.lead_seconds)


def plan(s: Settings) -> list[Scenario]:
    if s.steady_changes % 2 or s.high_changes % 2:
        raise ValueError("change counts must be even so that every scenario ends with N instances")
    n = s.instances
    return [
        Scenario(
            "baseline", "Baseline (no churn)", "load only, no Consul write", (), math.ceil(s.baseline_seconds), 0.0
        ),
        _scenario(
            "steady",
            "Steady churn",
            f"{s.steady_changes} changes, one every {s.steady_interval:g} s "
            f"(register a new instance, then deregister the oldest; {n}-{n + 1} instances)",
            alternating(s.steady_changes, s.steady_interval),
            s,
        ),
        _scenario(
            "rolling",
            "Rolling deploy",
            f"{s.rolling_deploys} deploy(s), each replacing all {n} instances: {2 * n} changes in "
            f"{s.rolling_span:g} s (register new, deregister old, every {s.rolling_span / (2 * n) * 1000:.0f} ms)"
            + (f", {s.rolling_gap:g} s apart" if s.rolling_deploys > 1 else ""),
            rolling(s.rolling_deploys, n, s.rolling_span, s.rolling_gap),
            s,
        ),
        _scenario(
            "high",
            "High churn",
            f"{s.high_changes} changes, {1 / s.high_interval:g} a second (register new / deregister oldest)",
            alternating(s.high_changes, s.high_interval),
            s,
        ),
    ]
