"""Pick the sink for the configured mode."""

from __future__ import annotations

from syncer.config import Settings
from syncer.sinks.base import Sink
from syncer.sinks.reload import ReloadSink


def make_sink(settings: Settings) -> Sink:
    if settings.mode == "reload":
        return ReloadSink(settings.reload)
    from syncer.sinks.api import ApiSink  # noqa: PLC0415 - only api mode needs it

    return ApiSink(settings.api)
