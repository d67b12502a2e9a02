"""The nginx side of ``syncer compare``: the replay log and online shadowing (``mirror``),
as directives added to the config ``syncer nginx-example`` prints.

Replay log: a ``log_format … escape=json`` (see ``logformat``) and an ``access_log`` in
the ``http`` block. Shadowing: the proxied ``location /`` gets ``mirror`` to an internal
location that proxies a sampled share (``split_clients`` on ``$request_id``) to the
candidate, with tight timeouts, and logs the candidate's status and latency under the
same ``$request_id``. nginx discards the mirror's response; the client never sees it.
A slow mirror still delays the *next* request on the same keep-alive connection (nginx
finalizes a request only when its mirror subrequests end), which is why the mirror
location's timeouts are tight: that delay is bounded by them.

Every value is validated before it reaches the config, like the rest of nginx-example.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import urllib.parse
from dataclasses import dataclass

from syncer.compare.logformat import DEFAULT_HEADERS, LogFormatError, check_header_names, mirror_log_format
from syncer.compare.logformat import replay_log_format as _replay_log_format
from syncer.nginx_example import ExampleError

MIRROR_LOCATION = "/_syncer_mirror"
MIRROR_UPSTREAM = "syncer_mirror_candidate"
_SAFE_PATH = re.compile(r"[A-Za-z0-9_./@+:=,~%-]+")
_DURATION = re.compile(r"[0-9]{1,6}(ms|s)?")
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
_HTTP_LINE = re.compile(r"^http \{[ \t]*$", re.MULTILINE)
_ROOT_LOCATION = re.compile(r"^([ \t]*)location / \{[ \t]*$", re.MULTILINE)


class HookError(ExampleError):
    """An option that cannot go into nginx.conf (``syncer nginx-example`` exits 2 with it)."""


@dataclass(frozen=True)
class ReplayLog:
    path: str
    headers: tuple[str, ...] = DEFAULT_HEADERS
    body_bytes: int = 0
    """Log request bodies up to this size (``client_body_buffer_size``); 0: no bodies."""


@dataclass(frozen=True)
class Mirror:
    url: str
    """The candidate, ``http://HOST:PORT``."""
    share: float = 100.0
    """Percent of requests mirrored, chosen by ``$request_id`` (0.01 .. 100)."""
    log: str = "logs/mirror.log"
    timeout: str = "300ms"
    """proxy_read/send_timeout of the mirror; proxy_connect_timeout is at most 100ms."""
    all_methods: bool = False
    """Mirror every method; by default only GET and HEAD (a mirrored POST has side effects)."""


def _condition(mirror: Mirror) -> str | None:
    """The variable that is non-empty for a request to mirror; None: mirror everything."""
    sampled = _share(mirror.share) != "100%"
    if sampled and not mirror.all_methods:
        return "$syncer_mirror_go"
    if sampled:
        return "$syncer_mirror_pick"
    if not mirror.all_methods:
        return "$syncer_mirror_method"
    return None


def _path(value: str, what: str) -> str:
    if not _SAFE_PATH.fullmatch(value):
        raise HookError(f"{what}: path may hold only letters, digits and _./@+:=,~%- ; got {value!r}")
    return value


def _duration_ms(value: str, what: str) -> int:
    if not _DURATION.fullmatch(value):
        raise HookError(f"{what}: expected a duration like 300ms or 1s, got {value!r}")
    ms = int(value[:-2]) if value.endswith("ms") else int(value.rstrip("s")) * 1000
    if not 1 <= ms <= 600_000:
        raise HookError(f"{what}: 1ms .. 600s, got {value!r}")
    return ms


def mirror_server(url: str) -> tuple[str, str]:
    """``http://HOST:PORT`` → (scheme, ``HOST:PORT`` as nginx's ``server`` takes it)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HookError(f"mirror: expected http://HOST:PORT, got {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise HookError(f"mirror: only scheme, host and port are allowed, got {url!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise HookError(f"mirror: {exc} in {url!r}") from None
    host = parts.hostname
    try:
        address = ipaddress.ip_address(host)
        host = f"[{address}]" if address.version == 6 else str(address)
    except ValueError:
        if not _HOSTNAME.fullmatch(host):
            raise HookError(f"mirror: host {host!r} is neither an IP address nor a host name") from None
    return parts.scheme, f"{host}:{port}"


def _share(value: float) -> str:
    if not 0.01 <= value <= 100 or round(value, 2) != value:
        raise HookError(f"mirror share: 0.01 .. 100 in steps of 0.01, got {value!r}")
    return f"{value:g}%"


def http_directives(replay: ReplayLog | None, mirror: Mirror | None) -> list[str]:
    """Lines for the ``http`` block (without indentation)."""
    lines: list[str] = []
    if replay is not None:
        _path(replay.path, "replay log")
        if not 0 <= replay.body_bytes <= 1024 * 1024:
            raise HookError(f"replay log body bound: 0 .. 1048576 bytes, got {replay.body_bytes}")
        try:
            fmt = _replay_log_format(replay.headers, with_body=replay.body_bytes > 0)
        except LogFormatError as exc:
            raise HookError(f"replay log: {exc}") from None
        lines += ["# syncer compare: one JSON line per request, the format `syncer compare` replays", fmt]
        if replay.body_bytes:
            lines.append(f"client_body_buffer_size {replay.body_bytes};  # bodies up to this size reach the log")
    if mirror is not None:
        _, server = mirror_server(mirror.url)
        _path(mirror.log, "mirror log")
        _duration_ms(mirror.timeout, "mirror timeout")
        lines += ["# syncer compare: shadow traffic to the candidate (nginx discards its answers)", mirror_log_format()]
        share = _share(mirror.share)
        if share != "100%":
            lines.append(f'split_clients "${{request_id}}" $syncer_mirror_pick {{ {share} 1; * ""; }}')
        if not mirror.all_methods:
            lines.append('map $request_method $syncer_mirror_method { GET 1; HEAD 1; default ""; }')
        if _condition(mirror) == "$syncer_mirror_go":
            lines.append('map "$syncer_mirror_method$syncer_mirror_pick" $syncer_mirror_go { "11" 1; default ""; }')
        lines.append(f"upstream {MIRROR_UPSTREAM} {{ server {server} max_fails=0; keepalive 8; }}")
    return lines


def server_directives(replay: ReplayLog | None, access_log: str | None) -> list[str]:
    """Lines for the proxying ``server`` block. The replay log goes here, not in ``http``:
    an ``access_log off`` there would silence every log of that level. A server-level
    ``access_log`` hides the ``http`` one, so ``access_log`` (the ordinary log) is repeated."""
    if replay is None:
        return []
    lines = [f"access_log {_path(replay.path, 'replay log')} syncer_replay;  # syncer compare's replay log"]
    if access_log:
        lines.append(f"access_log {_path(access_log, 'access log')};")
    return lines


def mirror_location(mirror: Mirror) -> list[str]:
    """The internal location the ``mirror`` subrequest goes to (server block level)."""
    scheme, _ = mirror_server(mirror.url)
    ms = _duration_ms(mirror.timeout, "mirror timeout")
    go = _condition(mirror)
    condition = f" if={go}" if go else ""  # log only what is mirrored
    lines = [
        f"location = {MIRROR_LOCATION} {{",
        "    internal;",
        "    log_subrequest on;",
        f"    access_log {_path(mirror.log, 'mirror log')} syncer_mirror{condition};",
    ]
    if go:
        lines.append(f'    if ({go} = "") {{ return 204; }}  # not sampled, or not GET/HEAD')
    lines += [
        f"    proxy_pass {scheme}://{MIRROR_UPSTREAM}$request_uri;",
        "    proxy_http_version 1.1;",
        '    proxy_set_header Connection "";',
        "    proxy_set_header Host $host;",
        "    proxy_set_header X-Request-Id $request_id;",
        "    proxy_set_header X-Syncer-Mirror 1;",
        "    # tight: a slow candidate must not hold the original's connection",
        f"    proxy_connect_timeout {min(ms, 100)}ms;",
        f"    proxy_send_timeout {ms}ms;",
        f"    proxy_read_timeout {ms}ms;",
        "    proxy_next_upstream off;",
        "}",
    ]
    return lines


def decorate(conf: str, replay: ReplayLog | None, mirror: Mirror | None, access_log: str | None = None) -> str:
    """``conf`` (a complete nginx.conf) with the replay log and/or the mirror added: after
    the ``http {`` line, and around the first ``location / {`` (the proxied traffic).
    ``access_log``: the ordinary access log of the config (None when off)."""
    if replay is None and mirror is None:
        return conf
    http = _HTTP_LINE.search(conf)
    if http is None:
        raise HookError("the config has no 'http {' line to add the replay log/mirror to")
    block = "".join(f"    {line}\n" for line in http_directives(replay, mirror))
    conf = conf[: http.end() + 1] + block + conf[http.end() + 1 :]
    root = _ROOT_LOCATION.search(conf)
    if root is None:
        raise HookError("the config has no 'location / {' for the replay log/mirror")
    indent = root.group(1)
    server = server_directives(replay, access_log) + (["", *mirror_location(mirror)] if mirror is not None else [])
    added = "".join(f"{indent}{line}\n" if line else "\n" for line in server)
    inside = f"{indent}    mirror {MIRROR_LOCATION};\n" if mirror is not None else ""
    before, opening, after = conf[: root.start()], conf[root.start() : root.end() + 1], conf[root.end() + 1 :]
    return before + added + "\n" + opening + inside + after


# --- syncer nginx-example options --------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("syncer compare (replay log, shadow traffic)")
    g.add_argument("--replay-log", metavar="PATH", help="also write the JSON replay log `syncer compare` reads")
    g.add_argument(
        "--replay-log-header",
        action="append",
        metavar="NAME",
        help=f"request header to log and replay (repeatable; default {', '.join(DEFAULT_HEADERS)})",
    )
    g.add_argument(
        "--replay-log-body",
        type=int,
        default=0,
        metavar="BYTES",
        help="log request bodies up to BYTES (0: none; larger bodies are not logged and not replayed)",
    )
    g.add_argument("--mirror", metavar="URL", help="mirror traffic to this candidate, http://HOST:PORT")
    g.add_argument("--mirror-share", type=float, default=100.0, metavar="PCT", help="percent mirrored (default 100)")
    g.add_argument("--mirror-log", default="logs/mirror.log", metavar="PATH", help="the mirror's log")
    g.add_argument("--mirror-timeout", default="300ms", metavar="DURATION", help="mirror read/send timeout (300ms)")
    g.add_argument(
        "--mirror-all-methods", action="store_true", help="mirror POST, PUT, DELETE ... too (default: GET and HEAD)"
    )


def apply(conf: str, args: argparse.Namespace) -> str:
    """``conf`` with what the options ask for; HookError for an unusable value."""
    replay = None
    if getattr(args, "replay_log", None):
        try:
            headers = check_header_names(args.replay_log_header or DEFAULT_HEADERS)
        except LogFormatError as exc:
            raise HookError(f"replay log: {exc}") from None
        replay = ReplayLog(args.replay_log, headers, args.replay_log_body)
    mirror = None
    if getattr(args, "mirror", None):
        mirror = Mirror(args.mirror, args.mirror_share, args.mirror_log, args.mirror_timeout, args.mirror_all_methods)
    return decorate(conf, replay, mirror, getattr(args, "access_log", None) or None)
