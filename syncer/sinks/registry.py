"""Every sync strategy ("dialect") syncer knows, in one table.

A new endpoint dialect (Tengine dyups, NGINX Plus's upstream API) is one module with its
sink plus one entry here: the settings section it reads, how to build its sink, whether it
can take host names (nginx resolves names in a rendered file; a balancer needs IPs), its
quiescence defaults and how long one apply may take at most. Nothing outside this module
asks which mode is running.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the sinks import config; config asks this table for defaults
    from syncer.config import Settings
    from syncer.sinks.base import Sink


@dataclass(frozen=True)
class Dialect:
    name: str
    summary: str
    section: str  # the TOML section with its settings
    factory: Callable[[Settings], Sink]
    accepts_hostnames: bool
    quiescence: tuple[float, float]  # (min, max) seconds when the config says nothing
    # The longest one apply may legitimately take; past it the agent stops feeding the
    # systemd watchdog, so a hung apply gets the agent restarted.
    apply_budget: Callable[[Settings], float]
    # Cross-field checks for this dialect's settings (raises config.ConfigError); returns
    # the settings with secrets resolved.
    check: Callable[[Settings], Settings]


def _reload_sink(settings: Settings) -> Sink:
    from syncer.sinks.reload import ReloadSink  # noqa: PLC0415 - each dialect loads only its own code

    return ReloadSink(settings.reload)


def _api_sink(settings: Settings) -> Sink:
    from syncer.sinks.api import ApiSink  # noqa: PLC0415

    return ApiSink(settings.api)


def _no_check(settings: Settings) -> Settings:
    return settings


def _api_check(settings: Settings) -> Settings:
    from dataclasses import replace  # noqa: PLC0415

    from syncer import logs  # noqa: PLC0415
    from syncer.config import ConfigError, read_secret  # noqa: PLC0415

    api = settings.api
    if api.token_file is None:
        raise ConfigError("api.token_file", None, "api mode needs the admin token's file")
    token = read_secret("api.token_file", api.token_file)
    logs.register_secret(token)  # redacted from every log line from now on
    return replace(settings, api=replace(api, token=token))


DIALECTS: dict[str, Dialect] = {
    d.name: d
    for d in (
        Dialect(
            name="reload",
            summary="render a file from a Jinja2 template, nginx -t, reload nginx",
            section="reload",
            factory=_reload_sink,
            accepts_hostnames=True,
            quiescence=(1.0, 5.0),  # batch a burst into one reload
            apply_budget=lambda s: 2 * s.reload.command_timeout + 5.0,  # nginx -t, then the reload
            check=_no_check,
        ),
        Dialect(
            name="api",
            summary="push only what changed to syncer's Lua endpoint inside nginx, no reload",
            section="api",
            factory=_api_sink,
            accepts_hostnames=False,
            quiescence=(0.0, 0.0),  # a push is cheap: apply every change at once
            apply_budget=lambda s: 8 * s.api.timeout + 5.0,  # a read, a batch, a conflict re-read, retries
            check=_api_check,
        ),
    )
}


class UnknownDialect(KeyError):
    pass


def dialect(name: str) -> Dialect:
    try:
        return DIALECTS[name]
    except KeyError:
        raise UnknownDialect(name) from None


def names() -> tuple[str, ...]:
    return tuple(DIALECTS)


def make_sink(settings: Settings) -> Sink:
    return dialect(settings.mode).factory(settings)
