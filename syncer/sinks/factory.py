"""Pick the sink for the configured mode (kept for callers of the old name; see registry.py)."""

from __future__ import annotations

from syncer.sinks.registry import make_sink

__all__ = ["make_sink"]
