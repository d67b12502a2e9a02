"""Settings: defaults, then a TOML file, then Consul's environment variables, then flags.

Every key is checked here, before anything is touched; a bad one raises ``ConfigError``
naming the key, the value and the reason. Secrets (the Consul token, the admin token)
are only ever read from files or the environment, never from argv or the TOML itself.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlparse

from syncer import validate
from syncer.routing.kv import check_prefix
from syncer.sinks import registry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

Mode = str  # a dialect's name in syncer.sinks.registry
MODES: tuple[str, ...] = registry.names()
T = TypeVar("T")


class ConfigError(ValueError):
    """One line for the operator: ``<key> = <value>: <reason>``."""

    def __init__(self, key: str, value: object, reason: str) -> None:
        self.key = key
        super().__init__(f"invalid setting {key} = {value!r}: {reason}")


@dataclass(frozen=True)
class ConsulSettings:
    address: str = "127.0.0.1:8500"
    scheme: Literal["http", "https"] = "http"
    token_file: Path | None = None
    token: str | None = field(default=None, repr=False)  # resolved from env or token_file
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    verify: bool = True
    datacenter: str | None = None
    consistency: Literal["default", "stale", "consistent"] = "default"
    wait: float = 300.0  # blocking-query wait, seconds (Consul's default; its max is 600)
    include_warning: bool = False
    max_connections: int = 16  # every connection to Consul, whatever the number of services
    resync_interval: float = 600.0  # each watched service re-read at least this often (0: never)
    max_query_rate: float = 10.0  # per watch, token bucket with burst 2
    max_last_contact: float = 10.0  # seconds; older answers are treated as suspect
    connect_timeout: float = 5.0
    once_timeout: float = 30.0  # how long `syncer once` keeps retrying an unreachable Consul

    @property
    def host(self) -> str:
        return self.address.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])


@dataclass(frozen=True)
class ServiceSelection:
    names: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()  # every service carrying any of these tags
    routing: bool = False  # follow Consul's service-router/-splitter/-resolver (docs/routing.md)
    kv_prefix: str = "syncer/"  # with routing: gray rules under <kv_prefix>gray/ (docs/kv-layout.md)


@dataclass(frozen=True)
class ReloadSettings:
    output: Path = Path("/etc/nginx/conf.d/syncer-upstreams.conf")
    template: Path | None = None  # None: the packaged templates/upstream.conf.j2
    nginx: str = "nginx"
    nginx_conf: Path | None = None  # passed as -c to nginx -t (and to the default reload)
    nginx_prefix: Path | None = None  # passed as -p
    test_command: tuple[str, ...] | None = None  # default: nginx [-p P] [-c C] -t -q
    reload_command: tuple[str, ...] | None = None  # default: nginx [-p P] [-c C] -s reload
    command_timeout: float = 30.0

    def nginx_args(self) -> list[str]:
        args = [self.nginx]
        if self.nginx_prefix:
            args += ["-p", str(self.nginx_prefix)]
        if self.nginx_conf:
            args += ["-c", str(self.nginx_conf)]
        return args

    def resolved_test_command(self) -> list[str]:
        return list(self.test_command) if self.test_command else [*self.nginx_args(), "-t", "-q"]

    def resolved_reload_command(self) -> list[str]:
        return list(self.reload_command) if self.reload_command else [*self.nginx_args(), "-s", "reload"]


@dataclass(frozen=True)
class ApiSettings:
    endpoint: str = "http://127.0.0.1:8081"  # the Lua admin API; or unix:/path/to.sock
    token_file: Path | None = None
    token: str | None = field(default=None, repr=False)
    snapshot_file: Path | None = None  # what nginx loads on a cold start
    timeout: float = 5.0
    anti_entropy: float = 60.0  # seconds between full reconciliations
    probe_interval: float = 2.0  # seconds between checks that nginx was not restarted


@dataclass(frozen=True)
class Quiescence:
    """Like consul-template's ``wait {min, max}``: act ``min`` after the last change,
    never later than ``max`` after the first. None takes the mode's default."""

    min: float | None = None
    max: float | None = None

    def resolved(self, mode: Mode) -> tuple[float, float]:
        default_min, default_max = registry.dialect(mode).quiescence
        low = self.min if self.min is not None else default_min
        high = self.max if self.max is not None else max(default_max, low)
        return low, high


@dataclass(frozen=True)
class SafetySettings:
    max_drop_share: float = 0.5  # losing more than this share of instances in one answer is held
    drop_confirm_delay: float = 3.0  # seconds before the confirming read; 0 turns the guard off
    # After Consul's index goes backwards (its state was lost or restored), drops are held
    # this long, or until the instances come back, before syncer follows Consul.
    state_loss_grace: float = 60.0
    initial_wait: float = 10.0  # the first sync waits this long at most for services that do not answer


@dataclass(frozen=True)
class ObserveSettings:
    listen: str = "127.0.0.1:9105"  # /metrics and /healthz; "" turns it off; or unix:/path
    allow_remote: bool = False
    consul_grace: float = 60.0  # unhealthy after Consul has been unreachable this long
    nginx_grace: float = 60.0  # unhealthy after nginx has refused changes this long


@dataclass(frozen=True)
class LogSettings:
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


@dataclass(frozen=True)
class Settings:
    mode: Mode = "reload"
    consul: ConsulSettings = ConsulSettings()
    services: ServiceSelection = ServiceSelection()
    reload: ReloadSettings = ReloadSettings()
    api: ApiSettings = ApiSettings()
    quiescence: Quiescence = Quiescence()
    safety: SafetySettings = SafetySettings()
    observe: ObserveSettings = ObserveSettings()
    log: LogSettings = LogSettings()
    source: Path | None = None  # the TOML file these came from, for SIGHUP

    def require_services(self) -> None:
        if not self.services.names and not self.services.tags:
            raise ConfigError("services", [], "select at least one service (--service NAME or --tag TAG)")


# --- parsing helpers -------------------------------------------------------------


def _positive(key: str, value: object, *, allow_zero: bool = False, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(key, value, "must be a number of seconds")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(key, value, "must be positive" if not allow_zero else "must not be negative")
    if high is not None and value > high:
        raise ConfigError(key, value, f"must be at most {high}")
    return float(value)


def _integer(key: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(key, value, f"must be a whole number from {low} to {high}")
    return value


def _boolean(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise ConfigError(key, value, "must be true or false")


def _choice(key: str, value: object, choices: tuple[str, ...]) -> Any:
    if value not in choices:
        raise ConfigError(key, value, f"must be one of {', '.join(choices)}")
    return value


def _path(key: str, value: object) -> Path:
    if not isinstance(value, str | Path) or not str(value):
        raise ConfigError(key, value, "must be a file path")
    return Path(value)


def _command(key: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = shlex.split(value)
    if not isinstance(value, list | tuple) or not value or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(key, value, "must be a command: a non-empty list of strings or a shell-quoted string")
    return tuple(value)


def _kv_prefix(key: str, value: object) -> str:
    try:
        return check_prefix(value)
    except ValueError as exc:
        raise ConfigError(key, value, str(exc)) from None


def _names(key: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        raise ConfigError(key, value, "must be a list of names")
    out = []
    seen: dict[str, str] = {}
    for item in value:
        try:
            name = validate.upstream_name(item)
        except validate.Invalid as exc:
            raise ConfigError(key, item, exc.reason) from None
        # nginx compares upstream names ignoring case ("duplicate upstream" fails nginx -t)
        # and so does Consul for service names: "Web" and "web" are one service.
        first = seen.setdefault(name.lower(), name)
        if first != name:
            raise ConfigError(key, item, f"differs from {first!r} only in case; nginx and Consul ignore case here")
        out.append(name)
    return tuple(dict.fromkeys(out))


def _tags(key: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        raise ConfigError(key, value, "must be a list of tags")
    out = []
    for item in value:
        try:
            out.append(validate.safe_token("tag", item))
        except validate.Invalid as exc:
            raise ConfigError(key, item, exc.reason) from None
    return tuple(dict.fromkeys(out))


def _address(key: str, value: object) -> tuple[str, str | None]:
    """``host:port`` or ``scheme://host:port`` (CONSUL_HTTP_ADDR's forms) → address, scheme."""
    if not isinstance(value, str) or not value:
        raise ConfigError(key, value, "must be host:port or http(s)://host:port")
    parsed = urlparse(value if "//" in value else f"//{value}")
    scheme = parsed.scheme or None
    if scheme not in (None, "http", "https"):
        raise ConfigError(key, value, "scheme must be http or https")
    try:
        port = parsed.port
    except ValueError:
        raise ConfigError(key, value, "port must be a number from 1 to 65535") from None
    if not parsed.hostname or port is None or parsed.path not in ("", "/"):
        raise ConfigError(key, value, "must be host:port or http(s)://host:port")
    host = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname
    return f"{host}:{port}", scheme


def _endpoint(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, value, "must be http://127.0.0.1:PORT or unix:/path")
    if value.startswith("unix:"):
        if not value[5:].startswith("/"):
            raise ConfigError(key, value, "a unix socket path must be absolute")
        return value
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(key, value, "must be http://127.0.0.1:PORT or unix:/path")
    return value.rstrip("/")


def _share(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ConfigError(key, value, "must be a fraction above 0 and at most 1")
    return float(value)


def _listen(key: str, value: object) -> str:
    if value == "":
        return ""
    if isinstance(value, str) and value.startswith("unix:/"):
        return value
    if isinstance(value, str) and ":" in value:
        host, _, port = value.rpartition(":")
        if host and port.isdigit() and 0 <= int(port) < 65536:  # 0: any free port
            return value
    raise ConfigError(key, value, 'must be HOST:PORT, unix:/path, or "" to turn it off')


# Each section: key -> parser(full_key, raw_value) -> value for the dataclass field.
Parser = Callable[[str, Any], Any]
_CONSUL: dict[str, Parser] = {
    "address": lambda k, v: _address(k, v)[0],
    "scheme": lambda k, v: _choice(k, v, ("http", "https")),
    "token_file": _path,
    "ca_file": _path,
    "cert_file": _path,
    "key_file": _path,
    "verify": _boolean,
    "datacenter": lambda k, v: validate.safe_token(k, v) if isinstance(v, str) else _choice(k, v, ()),
    "consistency": lambda k, v: _choice(k, v, ("default", "stale", "consistent")),
    "wait": lambda k, v: _positive(k, v, high=600),
    "include_warning": _boolean,
    "max_connections": lambda k, v: _integer(k, v, 4, 190),
    "resync_interval": lambda k, v: _positive(k, v, allow_zero=True, high=86400),
    "max_query_rate": lambda k, v: _positive(k, v, high=1000),
    "max_last_contact": _positive,
    "connect_timeout": lambda k, v: _positive(k, v, high=300),
    "once_timeout": lambda k, v: _positive(k, v, high=3600),
}
_SERVICES: dict[str, Parser] = {"names": _names, "tags": _tags, "routing": _boolean, "kv_prefix": _kv_prefix}
_RELOAD: dict[str, Parser] = {
    "output": _path,
    "template": _path,
    "nginx": lambda k, v: _command(k, v)[0],
    "nginx_conf": _path,
    "nginx_prefix": _path,
    "test_command": _command,
    "reload_command": _command,
    "command_timeout": lambda k, v: _positive(k, v, high=600),
}
_API: dict[str, Parser] = {
    "endpoint": _endpoint,
    "token_file": _path,
    "snapshot_file": _path,
    "timeout": lambda k, v: _positive(k, v, high=300),
    "anti_entropy": lambda k, v: _positive(k, v, high=86400),
    "probe_interval": lambda k, v: _positive(k, v, high=3600),
}
_QUIESCENCE: dict[str, Parser] = {
    "min": lambda k, v: _positive(k, v, allow_zero=True, high=600),
    "max": lambda k, v: _positive(k, v, allow_zero=True, high=3600),
}
_SAFETY: dict[str, Parser] = {
    "max_drop_share": _share,
    "drop_confirm_delay": lambda k, v: _positive(k, v, allow_zero=True, high=3600),
    "state_loss_grace": lambda k, v: _positive(k, v, allow_zero=True, high=3600),
    "initial_wait": lambda k, v: _positive(k, v, high=3600),
}
_OBSERVE: dict[str, Parser] = {
    "listen": _listen,
    "allow_remote": _boolean,
    "consul_grace": lambda k, v: _positive(k, v, high=86400),
    "nginx_grace": lambda k, v: _positive(k, v, high=86400),
}
_LOG: dict[str, Parser] = {
    "level": lambda k, v: _choice(k, v, ("debug", "info", "warning", "error")),
    "format": lambda k, v: _choice(k, v, ("auto", "json", "console")),
}
SECTIONS: dict[str, dict[str, Parser]] = {
    "consul": _CONSUL,
    "services": _SERVICES,
    "reload": _RELOAD,
    "api": _API,
    "quiescence": _QUIESCENCE,
    "safety": _SAFETY,
    "observe": _OBSERVE,
    "log": _LOG,
}
_SECRET_KEYS = {"consul.token", "api.token"}


def _apply_section(current: T, section: str, values: Mapping[str, Any]) -> T:
    parsers = SECTIONS[section]
    changes = {}
    for key, raw in values.items():
        full = f"{section}.{key}"
        if full in _SECRET_KEYS:
            raise ConfigError(full, "<hidden>", f"secrets are not read from the config; use {key}_file")
        if key not in parsers:
            raise ConfigError(full, raw, f"unknown key (known: {', '.join(sorted(parsers))})")
        changes[key] = parsers[key](full, raw)
    return replace(current, **changes)  # type: ignore[type-var]


def from_mapping(data: Mapping[str, Any], base: Settings | None = None) -> Settings:
    """Apply a TOML-shaped mapping on top of ``base`` (default: the defaults)."""
    settings = base or Settings()
    for key, value in data.items():
        if key == "mode":
            settings = replace(settings, mode=_choice("mode", value, MODES))
        elif key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(key, value, "must be a table")
            settings = replace(settings, **{key: _apply_section(getattr(settings, key), key, value)})
        else:
            raise ConfigError(key, value, f"unknown key (known: mode, {', '.join(SECTIONS)})")
    return settings


def load_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError("--config", str(path), "file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", str(path), f"not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError("--config", str(path), exc.strerror or str(exc)) from None


def from_environment(env: Mapping[str, str], settings: Settings) -> Settings:
    """Consul's own variables, as its CLI reads them."""
    consul = settings.consul
    if env.get("CONSUL_HTTP_ADDR"):
        address, scheme = _address("CONSUL_HTTP_ADDR", env["CONSUL_HTTP_ADDR"])
        consul = replace(consul, address=address, scheme=scheme or consul.scheme)  # type: ignore[arg-type]
    if env.get("CONSUL_HTTP_SSL"):
        consul = replace(consul, scheme="https" if _boolean("CONSUL_HTTP_SSL", env["CONSUL_HTTP_SSL"]) else "http")
    if env.get("CONSUL_HTTP_TOKEN_FILE"):
        consul = replace(consul, token_file=_path("CONSUL_HTTP_TOKEN_FILE", env["CONSUL_HTTP_TOKEN_FILE"]))
    if env.get("CONSUL_HTTP_TOKEN"):
        consul = replace(consul, token=env["CONSUL_HTTP_TOKEN"])
    if env.get("CONSUL_CACERT"):
        consul = replace(consul, ca_file=_path("CONSUL_CACERT", env["CONSUL_CACERT"]))
    if env.get("CONSUL_CLIENT_CERT"):
        consul = replace(consul, cert_file=_path("CONSUL_CLIENT_CERT", env["CONSUL_CLIENT_CERT"]))
    if env.get("CONSUL_CLIENT_KEY"):
        consul = replace(consul, key_file=_path("CONSUL_CLIENT_KEY", env["CONSUL_CLIENT_KEY"]))
    if env.get("CONSUL_HTTP_SSL_VERIFY"):
        consul = replace(consul, verify=_boolean("CONSUL_HTTP_SSL_VERIFY", env["CONSUL_HTTP_SSL_VERIFY"]))
    return replace(settings, consul=consul)


def read_secret(key: str, path: Path) -> str:
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(key, str(path), f"cannot read: {exc.strerror or exc}") from None
    if not value:
        raise ConfigError(key, str(path), "file is empty")
    if any(ch.isspace() for ch in value):
        raise ConfigError(key, str(path), "token contains whitespace")
    return value


def check(settings: Settings, env_token_set: bool) -> Settings:
    """Cross-field checks and secret resolution; returns the settings with tokens filled in."""
    consul = settings.consul
    if consul.token_file and not env_token_set:
        consul = replace(consul, token=read_secret("consul.token_file", consul.token_file))
    if bool(consul.cert_file) != bool(consul.key_file):
        raise ConfigError("consul.cert_file", str(consul.cert_file), "cert_file and key_file go together")
    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(consul, key)
        if path is not None and not path.is_file():
            raise ConfigError(f"consul.{key}", str(path), "file not found")
    low, high = settings.quiescence.resolved(settings.mode)
    if high < low:
        raise ConfigError("quiescence.max", high, f"must not be below quiescence.min ({low})")
    if settings.observe.listen:
        from syncer.observe import ListenRefused, check_listen  # noqa: PLC0415 - avoid an import cycle

        try:
            check_listen(settings.observe.listen, settings.observe.allow_remote)
        except ListenRefused as exc:
            raise ConfigError("observe.listen", settings.observe.listen, str(exc)) from None
    if settings.reload.template is not None and not settings.reload.template.is_file():
        raise ConfigError("reload.template", str(settings.reload.template), "file not found")
    return registry.dialect(settings.mode).check(replace(settings, consul=consul))


def load(
    config_file: Path | None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Defaults ← TOML file ← environment ← flags (``overrides`` is TOML-shaped)."""
    env = os.environ if env is None else env
    settings = Settings()
    if config_file is not None:
        settings = from_mapping(load_file(config_file), settings)
        settings = replace(settings, source=config_file)
    settings = from_environment(env, settings)
    env_token = bool(env.get("CONSUL_HTTP_TOKEN"))
    if overrides:
        settings = from_mapping(overrides, settings)
        if "token_file" in overrides.get("consul", {}):
            # A token file given as a flag wins over CONSUL_HTTP_TOKEN, as flags do.
            settings = replace(settings, consul=replace(settings.consul, token=None))
            env_token = False
    return check(settings, env_token_set=env_token)
