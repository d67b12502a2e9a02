"""Render an example nginx config for either sync mode (``syncer nginx-example``).

Two layouts:

- ``prefix`` (the default): a complete nginx.conf, started with ``nginx -p PREFIX -c
  FILE``: relative paths (pid, logs, temp folders) resolve against PREFIX, except
  ``include`` which nginx resolves against the folder of the config file.
- ``debian``: the file that goes in ``/etc/nginx/conf.d/`` (or ``sites-available/``)
  beside Debian's stock ``/etc/nginx/nginx.conf``, which already loads the modules from
  modules-enabled/, sets the pid, log and temp paths and ``default_type``, and includes
  ``conf.d/*.conf`` inside ``http {}``: only http-level directives, Debian's paths.

Every value that lands in the config is validated first, so an option can never inject
nginx syntax.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Literal

import jinja2

from syncer import resources
from syncer.routing.entries import SERVICE_NAME
from syncer.routing.names import var_suffix

Mode = Literal["reload", "api"]
Layout = Literal["prefix", "debian"]
LAYOUTS: tuple[Layout, ...] = ("prefix", "debian")

DEBIAN_CONF_D = "/etc/nginx/conf.d"
"""Debian's nginx.conf includes ``conf.d/*.conf`` inside ``http {}``."""
DEBIAN_WORKER_CONNECTIONS = 768
"""What Debian's stock nginx.conf sets (the rlimit advice in the header follows it)."""

UPSTREAM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# Paths go into nginx directives and into Lua string literals unquoted: no
# whitespace, quotes, backslashes, ';', '{', '}', '$' or '#'.
SAFE_PATH = re.compile(r"[A-Za-z0-9_./@+:=,~%-]+")
SIZE = re.compile(r"[0-9]+[kKmM]?")
DURATION = re.compile(r"[0-9]+(ms|s|m)?")
USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}( [a-z_][a-z0-9_-]{0,31})?")
LOG_LEVELS = ("debug", "info", "notice", "warn", "error", "crit", "alert", "emerg")

LUA_MODULE_LINES = (
    "/usr/lib/nginx/modules/ndk_http_module.so",
    "/usr/lib/nginx/modules/ngx_http_lua_module.so",
)


def _default_lua_dir() -> str:
    return str(resources.lua_dir())


def rlimit_nofile(worker_connections: int) -> int:
    """``worker_rlimit_nofile`` for ``worker_connections``: a proxied request holds two
    descriptors (client and upstream), plus room for listeners, logs and files."""
    return 2 * worker_connections + 64


@dataclass(frozen=True)
class ExampleOptions:
    """What the example config needs to know; defaults suit a local trial run."""

    listen: str = "127.0.0.1:8080"
    """Address for proxied traffic: ``PORT``, ``IPv4:PORT`` or ``[IPv6]:PORT``."""
    admin_listen: str = "127.0.0.1:8081"
    """Admin API (api mode): ``127.x.x.x:PORT``, ``[::1]:PORT`` or ``unix:/path``."""
    admin_allow_remote: bool = False
    """Let the admin API listen beyond loopback (the bearer token is then all that guards
    it, in clear text unless something in front adds TLS): an explicit operator choice."""
    services: tuple[str, ...] = ("web",)
    """Upstream names; Host ``<service>`` or ``<service>.*`` routes there, default the first."""
    token_file: str = "/etc/syncer/admin.token"  # noqa: S105 - a path, not a secret
    snapshot_file: str | None = "/var/lib/syncer/snapshot.json"
    lua_dir: str = field(default_factory=_default_lua_dir)
    upstream_conf: str = "/etc/nginx/conf.d/syncer-upstreams.conf"
    """Reload mode: the file syncer renders (``[reload] output``) and the config includes."""
    pid_path: str = "logs/nginx.pid"
    error_log: str = "logs/error.log"
    error_log_level: str = "warn"
    access_log: str | None = "logs/access.log"
    """``None`` turns the access log off."""
    admin_access_log: str | None = "logs/admin-access.log"
    temp_dir_prefix: str | None = "temp_"
    """Prefix-relative temp folders (``temp_proxy`` ...) so a non-default prefix works;
    ``None`` keeps the compiled-in ones."""
    worker_processes: int | Literal["auto"] = "auto"
    worker_connections: int = 1024
    load_modules: bool = True
    """Emit ``load_module`` lines (a ``-p/-c`` nginx does not read modules-enabled/)."""
    user: str | None = None
    """``user`` directive (only meaningful when nginx starts as root)."""
    dict_name: str = "syncer_upstreams"
    dict_size: str = "10m"
    max_body: int = 1048576
    keepalive: int = 64
    connect_timeout: str = "2s"
    next_upstream_tries: int = 3
    log_phase: bool = False
    """Api mode: ``log_by_lua`` in the proxying location, needed only for ``max_conns``
    (it releases the slots); costs ~1 us of CPU per request. Passive health works without it."""
    admin_socket: str | None = None
    """Api mode: serve the admin API on this unix socket (absolute path) and put a
    ``stream`` proxy on ``admin_listen`` in front, which caps admin connections when they
    are accepted (http's limit_conn counts only complete request headers). Needs
    ngx_stream_module (Debian: libnginx-mod-stream)."""
    admin_connections: int = 16
    """With ``admin_socket``: admin connections open at once; more are closed at accept."""
    routing_entries: tuple[str, ...] = ()
    """Entry services for Consul L7 routing (docs/routing.md): one server per entry on
    ``routing_listen``, selected by Host ``<entry>`` (the first is the default server)."""
    routing_listen: str = "127.0.0.1:8082"
    debug_headers: bool = False
    """Add ``X-Syncer-Worker`` (worker pid) and ``X-Syncer-Upstream-Addr`` to proxied
    responses: handy when checking which worker and server answered; off in production."""
    layout: Layout = "prefix"
    """``prefix``: a whole nginx.conf; ``debian``: a conf.d file (use :func:`debian_options`)."""


def debian_options(**overrides: object) -> ExampleOptions:
    """Options for ``--layout debian``: Debian's paths for what the snippet names itself
    (the admin access log, the stable Lua folder); the rest is Debian's nginx.conf's."""
    values: dict[str, object] = {
        "layout": "debian",
        "lua_dir": str(resources.installed_lua_dir()),
        "pid_path": "/run/nginx.pid",
        "error_log": "/var/log/nginx/error.log",
        "access_log": "/var/log/nginx/access.log",
        "admin_access_log": "/var/log/nginx/syncer-admin-access.log",
        "temp_dir_prefix": None,
        "worker_connections": DEBIAN_WORKER_CONNECTIONS,
        "load_modules": False,
    }
    values.update(overrides)
    return ExampleOptions(**values)  # type: ignore[arg-type]


class ExampleError(ValueError):
    """An option value that cannot go into nginx.conf."""


def _check_listen(value: str, what: str, *, loopback_only: bool) -> None:
    refuse = (
        f"{what}: the admin API must listen on loopback or a unix socket, got {value!r} "
        "(--admin-allow-remote overrides this)"
    )
    if value.startswith("unix:"):
        path = value[5:]
        if not path.startswith("/") or not SAFE_PATH.fullmatch(path):
            raise ExampleError(f"{what}: unix socket path must be absolute and plain, got {value!r}")
        return
    host: str | None = None
    if value.isdigit():
        port_text = value
    else:
        match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})|([0-9.]+|\*):([0-9]{1,5})", value)
        if match is None:
            raise ExampleError(f"{what}: expected PORT, IPv4:PORT or [IPv6]:PORT, got {value!r}")
        host = match.group(1) or match.group(3)
        port_text = match.group(2) or match.group(4)
    if not 1 <= int(port_text) <= 65535:
        raise ExampleError(f"{what}: port out of range in {value!r}")
    if host is None or host == "*":
        if loopback_only:
            raise ExampleError(refuse)
        return
    try:
        address = ipaddress.ip_address(host)
    except ValueError as exc:
        raise ExampleError(f"{what}: {exc}") from exc
    if loopback_only and not address.is_loopback:
        raise ExampleError(refuse)


def _check_path(value: str, what: str) -> None:
    if not SAFE_PATH.fullmatch(value):
        raise ExampleError(f"{what}: path may hold only letters, digits and _./@+:=,~%- ; got {value!r}")


def validate(mode: Mode, opts: ExampleOptions) -> None:
    """Raise ExampleError for any option that would not make a working, safe config."""
    if mode not in ("reload", "api"):
        raise ExampleError(f"mode must be 'reload' or 'api', got {mode!r}")
    if opts.layout not in LAYOUTS:
        raise ExampleError(f"layout must be one of {', '.join(LAYOUTS)}, got {opts.layout!r}")
    if not opts.services:
        raise ExampleError("services: at least one service is needed")
    seen: set[str] = set()
    for service in opts.services:
        if not UPSTREAM_NAME.fullmatch(service):
            raise ExampleError(f"services: invalid upstream name {service!r}")
        if service.lower() in seen:
            raise ExampleError(f"services: {service!r} is listed twice (Host matching ignores case)")
        seen.add(service.lower())
    _check_listen(opts.listen, "listen", loopback_only=False)
    if mode == "api":
        _check_listen(opts.admin_listen, "admin_listen", loopback_only=not opts.admin_allow_remote)
        _check_path(opts.token_file, "token_file")
        if opts.snapshot_file is not None:
            _check_path(opts.snapshot_file, "snapshot_file")
        _check_path(opts.lua_dir, "lua_dir")
        if opts.admin_socket is not None:
            _check_path(opts.admin_socket, "admin_socket")
            if not opts.admin_socket.startswith("/"):
                raise ExampleError(f"admin_socket: must be an absolute path, got {opts.admin_socket!r}")
            if not 1 <= opts.admin_connections <= 1024:
                raise ExampleError(f"admin_connections: 1..1024, got {opts.admin_connections}")
        if not SIZE.fullmatch(opts.dict_size):
            raise ExampleError(f"dict_size: expected a size like 10m, got {opts.dict_size!r}")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", opts.dict_name):
            raise ExampleError(f"dict_name: invalid shared dict name {opts.dict_name!r}")
        if not 1024 <= opts.max_body <= 256 * 1024 * 1024:
            raise ExampleError(f"max_body: expected 1024..268435456 bytes, got {opts.max_body}")
    else:
        _check_path(opts.upstream_conf, "upstream_conf")
    for what, path in (
        ("pid_path", opts.pid_path),
        ("error_log", opts.error_log),
        ("access_log", opts.access_log),
        ("admin_access_log", opts.admin_access_log),
        ("temp_dir_prefix", opts.temp_dir_prefix),
    ):
        if path is not None:
            _check_path(path, what)
    if opts.error_log_level not in LOG_LEVELS:
        raise ExampleError(f"error_log_level: one of {', '.join(LOG_LEVELS)}, got {opts.error_log_level!r}")
    if opts.worker_processes != "auto" and not (
        isinstance(opts.worker_processes, int) and 1 <= opts.worker_processes <= 1024
    ):
        raise ExampleError(f"worker_processes: 'auto' or 1..1024, got {opts.worker_processes!r}")
    if not 16 <= opts.worker_connections <= 1_000_000:
        raise ExampleError(f"worker_connections: 16..1000000, got {opts.worker_connections}")
    if not 1 <= opts.keepalive <= 100_000:
        raise ExampleError(f"keepalive: 1..100000, got {opts.keepalive}")
    if not 0 <= opts.next_upstream_tries <= 100:
        raise ExampleError(f"next_upstream_tries: 0..100, got {opts.next_upstream_tries}")
    if not DURATION.fullmatch(opts.connect_timeout):
        raise ExampleError(f"connect_timeout: expected a duration like 2s, got {opts.connect_timeout!r}")
    for entry in opts.routing_entries:
        if not SERVICE_NAME.fullmatch(entry):
            raise ExampleError(f"routing_entries: invalid service name {entry!r}")
    if opts.routing_entries:
        _check_listen(opts.routing_listen, "routing_listen", loopback_only=False)
    if opts.user is not None and not USER.fullmatch(opts.user):
        raise ExampleError(f"user: expected 'USER' or 'USER GROUP', got {opts.user!r}")


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resources.templates_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - nginx.conf, not HTML; every value is validated above
    )


def _included_by_debian(path: str) -> bool:
    """Debian's ``include /etc/nginx/conf.d/*.conf`` already reads this file: including it
    again would define every upstream twice (``duplicate upstream``)."""
    folder, _, name = path.rpartition("/")
    return folder == DEBIAN_CONF_D and name.endswith(".conf") and not name.startswith(".")


def render_example(mode: Mode, opts: ExampleOptions) -> str:
    """The nginx config for ``mode`` ("reload" or "api") in ``opts.layout``."""
    validate(mode, opts)
    full = opts.layout == "prefix"
    temp_paths: list[tuple[str, str]] = []
    if full and opts.temp_dir_prefix is not None:
        temp_paths = [
            (f"{kind}_temp_path", f"{opts.temp_dir_prefix}{kind}")
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        ]
    template = _environment().get_template(f"nginx-{mode}.conf.j2")
    return template.render(
        full=full,
        mode=mode,
        include_upstream_conf=full or not _included_by_debian(opts.upstream_conf),
        worker_rlimit_nofile=rlimit_nofile(opts.worker_connections),
        load_modules=opts.load_modules and full,
        user=opts.user,
        worker_processes=opts.worker_processes,
        worker_connections=opts.worker_connections,
        pid_path=opts.pid_path,
        error_log=opts.error_log,
        error_log_level=opts.error_log_level,
        access_log=opts.access_log or "off",
        admin_access_log=opts.admin_access_log or "off",
        temp_paths=temp_paths,
        lua_dir=opts.lua_dir.rstrip("/") or "/",
        dict=opts.dict_name,
        dict_size=opts.dict_size,
        token_file=opts.token_file,
        snapshot_file=opts.snapshot_file,
        max_body=opts.max_body,
        services=list(opts.services),
        listen=opts.listen,
        admin_listen=opts.admin_listen,
        keepalive=opts.keepalive,
        connect_timeout=opts.connect_timeout,
        next_upstream_tries=opts.next_upstream_tries,
        upstream_conf=opts.upstream_conf,
        debug_headers=opts.debug_headers,
        admin_socket=opts.admin_socket,
        admin_connections=opts.admin_connections,
        log_phase=opts.log_phase,
        routing=[(entry, var_suffix(entry)) for entry in opts.routing_entries],
        routing_listen=opts.routing_listen,
        routing_dir=os.path.dirname(opts.upstream_conf) or ".",
    )


def _workers(value: str) -> int | Literal["auto"]:
    if value == "auto":
        return "auto"
    try:
        return int(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number, got {value!r}") from exc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``syncer nginx-example``."""
    d = ExampleOptions(lua_dir="")
    parser.add_argument("--mode", choices=("reload", "api"), required=True, help="sync mode to configure")
    parser.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="prefix",
        help="prefix: a whole nginx.conf for `nginx -p PREFIX -c FILE` (default); debian: the file for "
        "/etc/nginx/conf.d/ beside Debian's stock nginx.conf (no load_module, Debian's paths)",
    )
    parser.add_argument("--listen", default=d.listen, help=f"traffic listen address (default {d.listen})")
    parser.add_argument(
        "--admin-listen",
        default=d.admin_listen,
        help=f"api mode: admin API address, loopback or unix:/path (default {d.admin_listen})",
    )
    parser.add_argument(
        "--admin-allow-remote",
        action="store_true",
        help="api mode: allow a non-loopback --admin-listen (only the bearer token guards it then)",
    )
    parser.add_argument(
        "--service",
        dest="services",
        action="append",
        metavar="NAME",
        help="upstream name, repeatable; Host NAME or NAME.* routes to it, the first is the default (default: web)",
    )
    parser.add_argument("--token-file", default=d.token_file, help=f"api mode (default {d.token_file})")
    parser.add_argument(
        "--snapshot-file",
        default=d.snapshot_file,
        help=f"api mode: snapshot loaded on a cold start, '' for none (default {d.snapshot_file})",
    )
    parser.add_argument(
        "--lua-dir",
        default=None,
        help="folder holding syncer/*.lua (default: `syncer lua-path`; debian layout: /usr/share/syncer/lua)",
    )
    parser.add_argument(
        "--upstream-conf",
        default=d.upstream_conf,
        help=f"reload mode: the rendered upstream file to include (default {d.upstream_conf})",
    )
    parser.add_argument("--pid", dest="pid_path", default=None, help=f"pid file (default {d.pid_path})")
    parser.add_argument("--error-log", default=None, help=f"error log (default {d.error_log})")
    parser.add_argument("--access-log", default=None, help=f"access log, '' for off (default {d.access_log})")
    parser.add_argument("--worker-processes", type=_workers, default=d.worker_processes)
    parser.add_argument("--dict-size", default=d.dict_size, help="api mode: lua_shared_dict size")
    parser.add_argument(
        "--no-load-module",
        dest="load_modules",
        action="store_false",
        help="api mode: omit load_module lines (when modules-enabled/ already loads them)",
    )
    parser.add_argument(
        "--log-phase",
        dest="log_phase",
        action="store_true",
        help="api mode: add log_by_lua so max_conns works (~1 us per request; off by default)",
    )
    parser.add_argument("--no-log-phase", dest="log_phase", action="store_false", help=argparse.SUPPRESS)
    parser.add_argument(
        "--admin-socket",
        default=None,
        help="api mode: admin API on this unix socket behind a stream proxy on --admin-listen that caps "
        "admin connections at accept time (needs ngx_stream_module; a folder nginx's workers can traverse)",
    )
    parser.add_argument("--user", default=None, help="nginx 'user' directive (root-started nginx)")
    parser.add_argument(
        "--routing-entry",
        dest="routing_entries",
        action="append",
        metavar="SERVICE",
        help="entry service routed by Consul's L7 entries (docs/routing.md), repeatable",
    )
    parser.add_argument("--routing-listen", default=d.routing_listen, help="where the routing entries listen")
    from syncer.compare import nginx_hook  # noqa: PLC0415 - `syncer compare`'s replay log and mirror

    nginx_hook.add_arguments(parser)


def options_from_args(args: argparse.Namespace) -> ExampleOptions:
    layout: Layout = args.layout
    base = debian_options() if layout == "debian" else ExampleOptions(lua_dir=args.lua_dir or _default_lua_dir())
    access_log = base.access_log if args.access_log is None else (args.access_log or None)
    return ExampleOptions(
        layout=layout,
        admin_access_log=base.admin_access_log,
        temp_dir_prefix=base.temp_dir_prefix,
        worker_connections=base.worker_connections,
        listen=args.listen,
        admin_listen=args.admin_listen,
        admin_allow_remote=args.admin_allow_remote,
        services=tuple(args.services or ("web",)),
        token_file=args.token_file,
        snapshot_file=args.snapshot_file or None,
        lua_dir=args.lua_dir or base.lua_dir,
        upstream_conf=args.upstream_conf,
        pid_path=args.pid_path or base.pid_path,
        error_log=args.error_log or base.error_log,
        access_log=access_log,
        worker_processes=args.worker_processes,
        dict_size=args.dict_size,
        load_modules=args.load_modules and base.load_modules,
        log_phase=args.log_phase,
        admin_socket=args.admin_socket,
        user=args.user,
        routing_entries=tuple(args.routing_entries or ()),
        routing_listen=args.routing_listen,
    )


def run(args: argparse.Namespace) -> int:
    """Print the config; exit status 2 with a message for an unusable option."""
    try:
        text = render_example(args.mode, options_from_args(args))
        from syncer.compare import nginx_hook  # noqa: PLC0415

        text = nginx_hook.apply(text, args)
    except ExampleError as exc:
        print(f"syncer nginx-example: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


def _main() -> int:  # pragma: no cover - convenience for `python -m syncer.nginx_example`
    parser = argparse.ArgumentParser(prog="syncer nginx-example", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())


__all__ = [
    "LAYOUTS",
    "ExampleError",
    "ExampleOptions",
    "Layout",
    "Mode",
    "add_arguments",
    "debian_options",
    "render_example",
    "rlimit_nofile",
    "run",
    "validate",
]
