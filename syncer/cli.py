"""``syncer``: the command line. Parses flags into TOML-shaped overrides; settings do the rest.

Exit codes: 0 done, 1 a runtime failure (Consul unreachable, nginx refused the change),
2 invalid configuration (nothing was touched).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from syncer import config, logs
from syncer.sinks import registry

SUBCOMMANDS = ("run", "once", "dev-consul", "nginx-example", "compare", "lua-path", "manpage")


class _RefuseSecret(argparse.Action):
    """A token on the command line shows in ps, /proc and shell history: refuse it, and do
    not echo it back (argparse would, in "unrecognized arguments")."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: object, values: object, option: object = None
    ) -> None:
        parser.error(
            f"{option}: tokens are never read from the command line (they would show in ps); "
            "use --consul-token-file / --api-token-file, or CONSUL_HTTP_TOKEN[_FILE]"
        )


class _Once(argparse.Action):
    """``--config`` twice would otherwise keep the last file silently: refuse it (exit 2)."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: object, values: object, option: object = None
    ) -> None:
        first = getattr(namespace, self.dest, None)
        if first is not None:
            parser.error(f"{option} given more than once ({first}, {values}): give one file (files are not merged)")
        setattr(namespace, self.dest, values)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("syncer")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _sync_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("what to watch")
    g.add_argument("--config", type=Path, action=_Once, help="TOML configuration file (once)")
    g.add_argument(
        "--mode",
        choices=registry.names(),
        help="reload: rewrite upstream.conf and reload nginx; "
        "api: push changes to the Lua endpoint inside nginx (default: reload)",
    )
    g.add_argument(
        "--service",
        action="append",
        metavar="NAME",
        help="a Consul service to keep as an nginx upstream of the same name (repeatable)",
    )
    g.add_argument("--tag", action="append", metavar="TAG", help="also watch every service carrying TAG (repeatable)")
    g.add_argument(
        "--include-warning",
        action="store_true",
        default=None,
        help="keep instances whose checks are in warning (with Weights.Warning)",
    )
    g.add_argument(
        "--routing",
        action="store_true",
        default=None,
        help="steer traffic by Consul's service-router/-splitter/-resolver entries (docs/routing.md)",
    )
    c = parser.add_argument_group("Consul (also CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN[_FILE], CONSUL_CACERT, ...)")
    c.add_argument("--consul-addr", metavar="HOST:PORT", help="Consul agent address (default 127.0.0.1:8500)")
    c.add_argument("--consul-token-file", type=Path, metavar="PATH", help="file holding the ACL token")
    c.add_argument("--consul-token", "--token", action=_RefuseSecret, help=argparse.SUPPRESS)
    r = parser.add_argument_group("reload mode")
    r.add_argument("--output", type=Path, help="the upstream.conf to write")
    r.add_argument("--template", type=Path, help="Jinja2 template (default: the packaged upstream.conf.j2)")
    r.add_argument("--nginx", metavar="BIN", help="nginx binary (default: nginx)")
    r.add_argument("--nginx-conf", type=Path, metavar="PATH", help="nginx.conf passed as -c to nginx -t and reload")
    r.add_argument("--nginx-prefix", type=Path, metavar="DIR", help="nginx prefix passed as -p")
    r.add_argument("--test-command", metavar="CMD", help="override the config test (default: nginx -t -q)")
    r.add_argument("--reload-command", metavar="CMD", help="override the reload (default: nginx -s reload)")
    a = parser.add_argument_group("api mode")
    a.add_argument("--api-endpoint", metavar="URL", help="admin API: http://127.0.0.1:PORT or unix:/path")
    a.add_argument("--api-token-file", type=Path, metavar="PATH", help="file holding the admin API token")
    a.add_argument("--api-token", action=_RefuseSecret, help=argparse.SUPPRESS)
    a.add_argument("--snapshot-file", type=Path, metavar="PATH", help="state file nginx loads on a cold start")
    q = parser.add_argument_group("timing")
    q.add_argument("--quiescence-min", type=float, metavar="SECONDS", help="apply this long after the last change")
    q.add_argument("--quiescence-max", type=float, metavar="SECONDS", help="...but no later than this after the first")
    o = parser.add_argument_group("observability")
    o.add_argument(
        "--metrics-listen", metavar="HOST:PORT", help='/metrics and /healthz (default 127.0.0.1:9105; "" off)'
    )
    o.add_argument("--log-level", choices=("debug", "info", "warning", "warn", "error", "err"))
    o.add_argument("--log-format", choices=("auto", "json", "console"))


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """Flags → the same shape as the TOML file, so one validator serves both."""
    out: dict[str, dict[str, Any]] = {}

    def put(section: str, key: str, value: Any) -> None:
        if value is not None:
            out.setdefault(section, {})[key] = value

    put("services", "names", args.service)
    put("services", "tags", args.tag)
    put("consul", "include_warning", args.include_warning)
    put("services", "routing", args.routing)
    put("consul", "address", args.consul_addr)
    put("consul", "token_file", str(args.consul_token_file) if args.consul_token_file else None)
    put("reload", "output", str(args.output) if args.output else None)
    put("reload", "template", str(args.template) if args.template else None)
    put("reload", "nginx", args.nginx)
    put("reload", "nginx_conf", str(args.nginx_conf) if args.nginx_conf else None)
    put("reload", "nginx_prefix", str(args.nginx_prefix) if args.nginx_prefix else None)
    put("reload", "test_command", shlex.split(args.test_command) if args.test_command else None)
    put("reload", "reload_command", shlex.split(args.reload_command) if args.reload_command else None)
    put("api", "endpoint", args.api_endpoint)
    put("api", "token_file", str(args.api_token_file) if args.api_token_file else None)
    put("api", "snapshot_file", str(args.snapshot_file) if args.snapshot_file else None)
    put("quiescence", "min", args.quiescence_min)
    put("quiescence", "max", args.quiescence_max)
    put("observe", "listen", args.metrics_listen)
    put("log", "level", args.log_level)
    put("log", "format", args.log_format)
    result: dict[str, Any] = dict(out)
    if args.mode:
        result["mode"] = args.mode
    consul_addr = args.consul_addr
    if consul_addr and consul_addr.startswith("https://"):
        result.setdefault("consul", {})["scheme"] = "https"
    return result


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; given the ``command`` about to run, subcommands whose options need
    heavy imports (dev-consul's) are left bare, so `syncer run` never imports them."""
    parser = argparse.ArgumentParser(
        prog="syncer",
        description=f"syncer {_version()}: keep nginx upstreams in step with Consul's healthy instances.",
        epilog="Without a subcommand, `syncer [options]` means `syncer run [options]`.",
    )
    parser.add_argument("--version", action="version", version=f"syncer {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # allow_abbrev=False: a prefix such as `--consul-token SECRET` must never be taken for
    # `--consul-token-file SECRET` (the secret would then be echoed as a missing file).
    run = sub.add_parser("run", help="the long-running agent (the default)", allow_abbrev=False)
    _sync_options(run)
    once = sub.add_parser("once", help="one pass: read Consul, apply, exit (for debugging)", allow_abbrev=False)
    _sync_options(once)
    once.add_argument("--dry-run", action="store_true", help="print what would be applied; change nothing")
    dev = sub.add_parser(
        "dev-consul",
        help="an in-memory stand-in for a Consul agent's HTTP API, for demos and tests (not a Consul replacement)",
        description="An in-memory stand-in for a Consul agent's HTTP API, for the demo, the tests and "
        "the benchmark. It is NOT a Consul replacement: one node, no raft, no gossip, no persistence.",
    )
    if command in (None, "dev-consul"):
        from syncer.devconsul import cli as devconsul_cli  # noqa: PLC0415 - keep `syncer run` start-up light

        devconsul_cli.add_arguments(dev)
    example = sub.add_parser("nginx-example", help="print a complete nginx.conf wired for a mode")
    from syncer import nginx_example  # noqa: PLC0415

    nginx_example.add_arguments(example)
    # listed here only: `main` hands `syncer compare ...` to syncer.compare's own parser
    sub.add_parser("compare", help="replay logged requests against primary and candidate, report what differs")
    sub.add_parser(
        "lua-path",
        help="print the folder holding syncer's nginx Lua modules (for lua_package_path)",
        description="Print the folder to name in nginx's lua_package_path: SYNCER_LUA_DIR (set by the "
        "installed wrapper to /usr/share/syncer/lua), else the copy inside the Python package.",
    )
    sub.add_parser("manpage", description="Print syncer(1) in man(7) format.")  # no help=: not listed
    return parser


def _lua_path() -> int:
    from syncer import resources  # noqa: PLC0415

    folder = resources.lua_dir()
    if not resources.holds_lua(folder):
        print(f"syncer lua-path: {folder} holds no syncer/init.lua", file=sys.stderr)
        return 1
    if not resources.is_stable(folder):
        print(
            f"syncer lua-path: note: {folder} is inside the Python package and moves when the venv is "
            "rebuilt; scripts/install.sh installs a stable copy in /usr/share/syncer/lua",
            file=sys.stderr,
        )
    print(folder)
    return 0


def _manpage() -> int:
    from importlib import metadata  # noqa: PLC0415

    from syncer import manpage  # noqa: PLC0415

    try:
        version = metadata.version("syncer")
    except metadata.PackageNotFoundError:
        version = "unknown"
    sys.stdout.write(manpage.render(build_parser(), version))
    return 0


def _load_settings(args: argparse.Namespace) -> tuple[config.Settings, dict[str, Any]]:
    overrides = overrides_from(args)
    settings = config.load(args.config, overrides=overrides)
    settings.require_services()
    return settings, overrides


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "run")
    if argv[0] == "compare":  # loaded only for this command: `syncer run` never imports it
        from syncer.compare import cli as compare_cli  # noqa: PLC0415

        return compare_cli.main(argv[1:])
    args = build_parser(argv[0]).parse_args(argv)

    if args.command == "dev-consul":
        from syncer.devconsul import cli as devconsul_cli  # noqa: PLC0415

        return devconsul_cli.run(args)
    if args.command == "nginx-example":
        from syncer import nginx_example  # noqa: PLC0415

        return nginx_example.run(args)
    if args.command == "lua-path":
        return _lua_path()
    if args.command == "manpage":
        return _manpage()

    try:
        settings, overrides = _load_settings(args)
    except config.ConfigError as exc:
        print(f"syncer: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log.level, settings.log.format, stream=sys.stderr if args.command == "once" else None)

    if args.command == "once":
        from syncer.once import OnceFailed, run_once  # noqa: PLC0415

        try:
            return run_once(settings, dry_run=args.dry_run)
        except OnceFailed as exc:
            print(f"syncer once: {exc}", file=sys.stderr)
            return 1

    from syncer.agent import Agent  # noqa: PLC0415

    agent = Agent(settings, overrides=overrides)
    agent.install_signal_handlers()
    return agent.run()
