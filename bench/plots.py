"""PNG figures of a run (matplotlib, Agg backend): one per scenario, propagation, hot path."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.analysis import ModeSummary, WindowSummary
from bench.hotpath import HotpathResult

COLORS = {"reload": "tab:red", "api": "tab:blue", "dns": "tab:green", "dns-static": "tab:olive"}
SMOOTH = 5  # samples (0.5 s) in the throughput's moving average


def _smooth(values: list[float], width: int = SMOOTH) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= width:
            total -= values[i - width]
        out.append(total / min(i + 1, width))
    return out


def scenario_figure(windows: list[WindowSummary], path: Path) -> Path:
    """Throughput, errors, workers and RSS over time; both modes overlaid; changes marked."""
    fig, axes = plt.subplots(4, 1, figsize=(10, 10), sharex=True)
    first = windows[0]
    for n, ax in enumerate(axes):
        for i, t in enumerate(first.series.changes):
            label = "Consul write" if i == 0 and n == 0 else None
            ax.axvline(t, color="0.6", linewidth=0.6, alpha=0.5, label=label)
        ax.axvspan(first.series.load_end, max(max(w.series.t, default=0) for w in windows), color="0.93", zorder=0)
        ax.grid(True, alpha=0.3)
    for w in windows:
        color = COLORS.get(w.mode, "black")
        s = w.series
        axes[0].plot(s.rps_t, [v / 1000 for v in _smooth(s.rps)], color=color, label=f"{w.mode}")
        axes[1].step(s.err_t, s.errors, where="post", color=color, label=f"{w.mode}")
        axes[2].plot(
            s.t,
            [a + b for a, b in zip(s.workers, s.shutting_down, strict=True)],
            color=color,
            label=f"{w.mode}: all workers",
        )
        axes[2].plot(s.t, s.shutting_down, color=color, linestyle="--", label=f"{w.mode}: shutting down")
        axes[3].plot(s.t, s.rss_mib, color=color, label=w.mode)
    axes[0].set_ylabel("k requests/s\n(all clients, 0.5 s avg)")
    axes[1].set_ylabel("failed requests\nper 0.1 s (prober +\nlong-lived conns)")
    axes[2].set_ylabel("nginx workers")
    axes[3].set_ylabel("nginx RSS, MiB\n(master + workers)")
    axes[3].set_xlabel("seconds since the load started (grey: after the load, waiting for old workers)")
    for ax in axes:
        ax.legend(loc="upper right", fontsize=8)
    axes[0].set_ylim(bottom=0)
    axes[1].set_ylim(bottom=0)
    axes[2].set_ylim(bottom=0)
    axes[3].set_ylim(bottom=0)
    fig.suptitle(f"{first.title}: {first.what}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def propagation_figure(modes: list[ModeSummary], path: Path, target_ms: float) -> Path:
    fig, ax = plt.subplots(figsize=(9, 5))
    for m in modes:
        for action, style in (("register", "-"), ("deregister", "--")):
            values = sorted(
                c.backend_ms
                for w in m.windows.values()
                for c in w.changes
                if c.action == action and c.backend_ms is not None
            )
            if not values:
                continue
            ys = [(i + 1) / len(values) for i in range(len(values))]
            ax.step(
                [max(v, 0.1) for v in values],
                ys,
                where="post",
                color=COLORS.get(m.mode, "black"),
                linestyle=style,
                label=f"{m.mode}: {action} (n={len(values)})",
            )
    ax.axvline(target_ms, color="green", linewidth=1, label=f"api target p99 ≤ {target_ms:g} ms")
    ax.set_xscale("log")
    ax.set_xlabel("Consul write → first request to a new instance / last request to a removed one (ms, log)")
    ax.set_ylabel("share of changes")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Propagation latency, every change of every scenario", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def hotpath_figure(result: HotpathResult, path: Path) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
    rounds = range(1, len(result.static) + 1)
    width = 0.38
    left.bar(
        [r - width / 2 for r in rounds],
        [x.rps / 1000 for x in result.static],
        width,
        label="static upstream {}",
        color="tab:gray",
    )
    left.bar(
        [r + width / 2 for r in rounds],
        [x.rps / 1000 for x in result.lua],
        width,
        label="Lua balancer",
        color="tab:blue",
    )
    left.set_xlabel("round")
    left.set_ylabel("k requests/s")
    left.set_xticks(list(rounds))
    left.legend(fontsize=8, loc="lower right")
    right.bar(
        [r - width / 2 for r in rounds],
        [x.latency_ms["p99"] for x in result.static],
        width,
        label="static upstream {}",
        color="tab:gray",
    )
    right.bar(
        [r + width / 2 for r in rounds],
        [x.latency_ms["p99"] for x in result.lua],
        width,
        label="Lua balancer",
        color="tab:blue",
    )
    right.set_xlabel("round")
    right.set_ylabel("p99 latency, ms")
    right.set_xticks(list(rounds))
    fig.suptitle(f"Hot path, no churn: {result.servers} servers, wrk {result.seconds:g} s per run", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
