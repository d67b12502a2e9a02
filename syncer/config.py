"""Settings: defaults, then a TOML file, then Consul's environment variables, then flags.

Every key is checked here, before anything is touched; a bad one raises ``ConfigError``
naming the key, the value and the reason. Secrets (the Consul token, the admin token)
are only ever read from files or the environment, never from argv or the TOML itself;
a malformed one is refused naming where it came from, never its value, and every
resolved secret is handed to the log redactor (``syncer.logs.register_secret``).

Consul's own variables are read as its Go client reads them (hashicorp/consul
``api/api.go``): ``https://`` in an address from any source turns TLS on and nothing
turns it back off; ``CONSUL_HTTP_SSL`` only turns TLS on; ``CONSUL_HTTP_TOKEN_FILE``
wins over ``CONSUL_HTTP_TOKEN``; a token file is read with surrounding whitespace
trimmed; IPv6 addresses come bracketed (``[::1]:8500``).
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlparse

from syncer import logs, validate
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
    address: str = "127.0.0.1:8500"  # host:port, IPv6 bracketed; no port: the scheme's (80/443)
    scheme: Literal["http", "https"] = "http"
    token_file: Path | None = None
    token: str | None = field(default=None, repr=False)  # resolved from env or token_file
    acl_source: str = ""  # where the token comes from, for error lines (never the value)
    auth: tuple[str, str] | None = field(default=None, repr=False)  # CONSUL_HTTP_AUTH, basic auth
    namespace: str | None = None  # Enterprise: sent as ?ns=
    partition: str | None = None  # Enterprise: sent as ?partition=
    tls_server_name: str | None = None  # SNI and the name the certificate must carry
    ca_path: Path | None = None  # a directory of CA certificates (used when ca_file is unset)
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
        """The host without brackets: ``::1``, ``10.0.0.1``, ``consul.example``."""
        return split_host_port(self.address)[0]

    @property
    def url_host(self) -> str:
        """The host as a URL needs it: IPv6 in brackets."""
        host = self.host
        return f"[{host}]" if ":" in host else host

    @property
    def port(self) -> int:
        port = split_host_port(self.address)[1]
        if port is not None:
            return port
        return 443 if self.scheme == "https" else 80  # as Go's URL does for a bare host


@dataclass(frozen=True)
class ServiceSelection:
    names: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()  # every service carrying any of these tags
    routing: bool = False  # follow Consul's service-router/-splitter/-resolver (docs/routing.md)


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
    probe_interval: float = 0.2  # seconds between O(1) checks that nginx was not restarted (re-push fast)


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


def split_host_port(address: str) -> tuple[str, int | None]:
    """``host[:port]`` (IPv6 bracketed) → (host without brackets, port or None)."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else None
    host, sep, port = address.rpartition(":")
    return (host, int(port)) if sep else (address, None)


def _address(key: str, value: object) -> tuple[str, str | None]:
    """``host[:port]`` or ``scheme://host[:port]`` (CONSUL_HTTP_ADDR's forms) → address, scheme.

    IPv6 must be bracketed (``[::1]:8500``), as in Consul. ``unix://`` and a path after
    the address (Consul's reverse-proxy prefix) are refused: this client does neither.
    """
    usage = "must be host:port, [ipv6]:port or http(s)://host:port"
    if not isinstance(value, str) or not value or value != value.strip():
        raise ConfigError(key, value, usage)
    if value.startswith("unix://"):
        raise ConfigError(key, value, "unix sockets are not supported; give Consul's HTTP address as host:port")
    scheme_given, sep, rest = value.partition("://")
    if not sep:
        scheme_given, rest = "", value
    if scheme_given not in ("", "http", "https"):
        raise ConfigError(key, value, "scheme must be http or https")
    if "/" in rest.rstrip("/"):
        raise ConfigError(key, value, "a path after the address (a reverse-proxy prefix) is not supported")
    rest = rest.rstrip("/")
    if rest.count(":") > 1 and not rest.startswith("["):
        raise ConfigError(key, value, "an IPv6 address must be in brackets: [::1]:8500")
    parsed = urlparse(f"//{rest}")
    try:
        port = parsed.port
    except ValueError:
        raise ConfigError(key, value, "port must be a number from 1 to 65535") from None
    hostname = parsed.hostname
    if not hostname or parsed.username or parsed.password or (port is not None and port < 1):
        raise ConfigError(key, value, usage)
    if port is None and not scheme_given:
        # With a scheme, the scheme's port (80/443), as Go's client; without, likely a slip.
        raise ConfigError(key, value, usage + " (the port may be left out only after http:// or https://)")
    if rest.startswith("["):
        try:
            hostname = ipaddress.IPv6Address(hostname).compressed
        except ValueError:
            raise ConfigError(key, value, "is not a valid IPv6 address in brackets") from None
    elif not _HOST.match(hostname):
        raise ConfigError(key, value, usage)
    host = f"[{hostname}]" if ":" in hostname else hostname
    return (f"{host}:{port}" if port is not None else host), (scheme_given or None)


def go_bool(key: str, value: str) -> bool:
    """A boolean as Go's strconv.ParseBool reads one (Consul's environment variables)."""
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ConfigError(key, value, "must be true or false (1, t, TRUE, 0, f, FALSE, ...)")


def check_token(source: str, value: str, *, from_file: Path | None = None) -> str:
    """A token fit for an HTTP header, or ``ConfigError`` naming ``source``, never the value.

    A token file's surrounding whitespace is trimmed, as Consul's client does (a trailing
    newline is how editors and ``echo`` leave it). From the environment nothing is
    trimmed: ``$'tok\n'`` is refused, not guessed at. What remains must be printable
    ASCII without whitespace: Consul's tokens are UUIDs, and anything else would either
    be refused by the HTTP library (whose error text quotes the header) or never match.
    """
    shown = str(from_file) if from_file is not None else "<hidden>"
    if from_file is not None:
        value = value.strip()
        if not value:
            raise ConfigError(source, shown, "file is empty")
    if not value:
        raise ConfigError(source, shown, "token is empty")
    if value != value.strip():
        raise ConfigError(
            source, shown, "token has leading or trailing whitespace (a newline from $(...) or echo?); remove it"
        )
    for ch in value:
        if ch.isspace():
            raise ConfigError(source, shown, "token contains whitespace")
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise ConfigError(source, shown, "token contains a control character")
        if ord(ch) > 0x7E:
            raise ConfigError(source, shown, "token contains a non-ASCII character (tokens are ASCII)")
    return value


def _auth(key: str, value: str) -> tuple[str, str]:
    """``user:password`` or ``user`` (CONSUL_HTTP_AUTH), as Consul splits it."""
    user, _, password = value.partition(":")
    for ch in value:
        if ord(ch) < 0x20 or ord(ch) == 0x7F or ord(ch) > 0xFF:
            raise ConfigError(key, "<hidden>", "contains a control or non-latin-1 character")
    if not user:
        raise ConfigError(key, "<hidden>", "must be user:password or user")
    return user, password


def _enterprise_name(key: str, value: object) -> str:
    """A namespace or partition name (Consul: DNS-label-like)."""
    if not isinstance(value, str) or not _ENTERPRISE_NAME.match(value):
        raise ConfigError(key, value, "must be 1-64 letters, digits, '-' or '_'")
    return value


def _server_name(key: str, value: object) -> str:
    """CONSUL_TLS_SERVER_NAME: a host name, a port after it is dropped (as Consul does)."""
    if not isinstance(value, str) or not value:
        raise ConfigError(key, value, "must be a host name")
    name = value
    if name.rfind(":") > name.rfind("]"):
        name = name[: name.rfind(":")]
    name = name.strip("[]")
    if not _HOST.match(name):
        raise ConfigError(key, value, "must be a host name")
    return name


def _directory(key: str, value: object) -> Path:
    if not isinstance(value, str | Path) or not str(value):
        raise ConfigError(key, value, "must be a directory path")
    return Path(value)


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


LEVELS = ("debug", "info", "warning", "error")
LEVEL_ALIASES = {"warn": "warning", "err": "error"}  # consul-template's spellings

# Each section: key -> parser(full_key, raw_value) -> value for the dataclass field.
Parser = Callable[[str, Any], Any]
_CONSUL: dict[str, Parser] = {
    "address": lambda k, v: _address(k, v)[0],  # its scheme is applied in _apply_section
    "scheme": lambda k, v: _choice(k, v, ("http", "https")),
    "token_file": _path,
    "namespace": _enterprise_name,
    "partition": _enterprise_name,
    "tls_server_name": _server_name,
    "ca_path": _directory,
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
_SERVICES: dict[str, Parser] = {"names": _names, "tags": _tags, "routing": _boolean}
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
    "level": lambda k, v: _choice(k, LEVEL_ALIASES.get(v, v) if isinstance(v, str) else v, LEVELS),
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
_SECRET_KEYS = {"consul.token", "api.token", "consul.auth"}
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})?$|^[0-9A-Fa-f:.]+$")
_ENTERPRISE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


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
    if section == "consul" and "address" in values and _address("consul.address", values["address"])[1] == "https":
        changes["scheme"] = "https"  # https:// in the address turns TLS on, whatever `scheme` says
    if section == "consul" and "token_file" in values:
        changes["token"], changes["acl_source"] = None, "consul.token_file"
    return replace(current, **changes)  # type: ignore[type-var]


def from_mapping(data: Mapping[str, Any], base: Settings | None = None) -> Settings:
    """Apply a TOML-shaped mapping on top of ``base`` (default: the defaults)."""
    settings = base or Settings()
    for key, value in data.items():
        if key == "mode":
            settings = replace(settings, mode=_choice("mode", value, registry.names()))
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
    """Consul's own variables, as its Go client reads them (hashicorp/consul api/api.go)."""
    consul = settings.consul
    if env.get("CONSUL_HTTP_ADDR"):
        address, scheme = _address("CONSUL_HTTP_ADDR", env["CONSUL_HTTP_ADDR"])
        consul = replace(consul, address=address)
        if scheme == "https":  # http:// never turns TLS back off ("never revert to http")
            consul = replace(consul, scheme="https")
    if env.get("CONSUL_HTTP_SSL") and go_bool("CONSUL_HTTP_SSL", env["CONSUL_HTTP_SSL"]):
        consul = replace(consul, scheme="https")  # only ever turns TLS on
    # CONSUL_HTTP_TOKEN_FILE wins over CONSUL_HTTP_TOKEN, and both over the TOML token_file.
    if env.get("CONSUL_HTTP_TOKEN_FILE"):
        path = _path("CONSUL_HTTP_TOKEN_FILE", env["CONSUL_HTTP_TOKEN_FILE"])
        consul = replace(consul, token_file=path, token=None, acl_source="CONSUL_HTTP_TOKEN_FILE")
    elif env.get("CONSUL_HTTP_TOKEN"):
        token = check_token("CONSUL_HTTP_TOKEN", env["CONSUL_HTTP_TOKEN"])
        consul = replace(consul, token_file=None, token=token, acl_source="CONSUL_HTTP_TOKEN")
    if env.get("CONSUL_HTTP_AUTH"):
        consul = replace(consul, auth=_auth("CONSUL_HTTP_AUTH", env["CONSUL_HTTP_AUTH"]))
    if env.get("CONSUL_TLS_SERVER_NAME"):
        consul = replace(consul, tls_server_name=_server_name("CONSUL_TLS_SERVER_NAME", env["CONSUL_TLS_SERVER_NAME"]))
    if env.get("CONSUL_CAPATH"):
        consul = replace(consul, ca_path=_directory("CONSUL_CAPATH", env["CONSUL_CAPATH"]))
    if env.get("CONSUL_NAMESPACE"):
        consul = replace(consul, namespace=_enterprise_name("CONSUL_NAMESPACE", env["CONSUL_NAMESPACE"]))
    if env.get("CONSUL_PARTITION"):
        consul = replace(consul, partition=_enterprise_name("CONSUL_PARTITION", env["CONSUL_PARTITION"]))
    if env.get("CONSUL_CACERT"):
        consul = replace(consul, ca_file=_path("CONSUL_CACERT", env["CONSUL_CACERT"]))
    if env.get("CONSUL_CLIENT_CERT"):
        consul = replace(consul, cert_file=_path("CONSUL_CLIENT_CERT", env["CONSUL_CLIENT_CERT"]))
    if env.get("CONSUL_CLIENT_KEY"):
        consul = replace(consul, key_file=_path("CONSUL_CLIENT_KEY", env["CONSUL_CLIENT_KEY"]))
    if env.get("CONSUL_HTTP_SSL_VERIFY"):
        consul = replace(consul, verify=go_bool("CONSUL_HTTP_SSL_VERIFY", env["CONSUL_HTTP_SSL_VERIFY"]))
    return replace(settings, consul=consul)


def read_secret(key: str, path: Path) -> str:
    """A token from a file: surrounding whitespace trimmed (as Consul does), then checked."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(key, str(path), f"cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(key, str(path), "token file is not UTF-8 text") from None
    return check_token(key, text, from_file=path)


def check(settings: Settings) -> Settings:
    """Cross-field checks and secret resolution; returns the settings with tokens filled in."""
    consul = settings.consul
    if consul.token_file:
        consul = replace(consul, token=read_secret(consul.acl_source or "consul.token_file", consul.token_file))
    for secret in (consul.token, consul.auth[1] if consul.auth else None):
        if secret:
            logs.register_secret(secret)
    if consul.ca_path is not None and not consul.ca_path.is_dir():
        raise ConfigError("consul.ca_path", str(consul.ca_path), "directory not found")
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
    if overrides:
        settings = from_mapping(overrides, settings)
        if "token_file" in overrides.get("consul", {}):
            # A token file given as a flag wins over CONSUL_HTTP_TOKEN[_FILE], as flags do.
            settings = replace(settings, consul=replace(settings.consul, acl_source="--consul-token-file"))
    return check(settings)
