"""syncer(1), generated from the argparse parser (``syncer manpage``), so the manual page
always lists exactly the options the command accepts. scripts/install.sh installs it."""

from __future__ import annotations

import argparse
import datetime
import os
import re

SECTIONS_AFTER = """\
.SH EXIT STATUS
.TP
.B 0
done (or stopped by SIGTERM/SIGINT)
.TP
.B 1
a runtime failure: Consul unreachable, nginx refused the change
.TP
.B 2
invalid configuration or usage; nothing was touched (the systemd unit does not restart on it)
.SH SIGNALS
.TP
.B SIGHUP
re\\-read the configuration file, the environment and the token files; an invalid new
configuration is refused and the running one kept
.TP
.BR SIGTERM ", " SIGINT
stop the watches and exit 0, leaving nginx as it is
.SH ENVIRONMENT
Consul's own variables, read as Consul's client reads them:
.BR CONSUL_HTTP_ADDR ,
.BR CONSUL_HTTP_TOKEN ,
.BR CONSUL_HTTP_TOKEN_FILE ,
.BR CONSUL_HTTP_SSL ,
.BR CONSUL_HTTP_SSL_VERIFY ,
.BR CONSUL_CACERT ,
.BR CONSUL_CLIENT_CERT ,
.BR CONSUL_CLIENT_KEY .
.TP
.B SYNCER_LUA_DIR
the folder holding the nginx Lua modules, as printed by
.B syncer lua\\-path
(the installed wrapper sets it to /usr/share/syncer/lua)
.SH FILES
.TP
.I /etc/syncer/syncer.toml
the configuration (every key with its default in the installed example)
.TP
.I /etc/syncer/env
environment for the systemd unit
.TP
.I /etc/syncer/admin.token
api mode's bearer token for nginx's admin endpoint (mode 0600)
.TP
.I /var/lib/syncer/snapshot.json
api mode's snapshot, loaded by nginx on a cold start
.TP
.I /usr/share/syncer/lua/
the nginx Lua modules
.TP
.I /etc/systemd/system/syncer.service
the systemd unit
.SH SEE ALSO
.BR nginx (8),
.BR consul (1),
.BR systemd.exec (5);
/usr/local/share/doc/syncer/README.md and install.md
"""


def _escape(text: str) -> str:
    """Text for a roff line: backslashes escaped, no line starting with a control character."""
    text = text.replace("\\", "\\e")
    lines = [f"\\&{line}" if line.startswith((".", "'")) else line for line in text.splitlines()]
    return "\n".join(lines)


def _option_name(text: str) -> str:
    return _escape(text).replace("-", "\\-")


def _visible(action: argparse.Action) -> bool:
    return action.help != argparse.SUPPRESS


def _options(parser: argparse.ArgumentParser) -> list[str]:
    formatter = parser._get_formatter()
    out: list[str] = []
    for group in parser._action_groups:
        actions = [
            action
            for action in group._group_actions
            if _visible(action) and not isinstance(action, argparse._SubParsersAction)
        ]
        if not actions:
            continue
        title = group.title or "options"
        out.append(f".SS {_escape(title[0].upper() + title[1:])}")
        for action in actions:
            invocation = formatter._format_action_invocation(action)
            out.append(".TP")
            out.append(f".B {_option_name(invocation)}")
            if action.help:
                help_text = formatter._expand_help(action)
                out.append(_escape(re.sub(r"\s+", " ", help_text)))
    return out


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) for every subcommand listed in ``--help``."""
    found: list[tuple[str, str, argparse.ArgumentParser]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for listed in action._choices_actions:
                found.append((listed.dest, listed.help or "", action.choices[listed.dest]))
    return found


def render(parser: argparse.ArgumentParser, version: str, date: datetime.date | None = None) -> str:
    """The whole page, in the man(7) macros."""
    if date is None:  # reproducible builds set SOURCE_DATE_EPOCH
        epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
        date = datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).date() if epoch.isdigit() else None
    day = (date or datetime.date.today()).isoformat()
    name = parser.prog
    lines = [
        f'.TH {name.upper()} 1 "{day}" "{_escape(name)} {_escape(version)}" "User Commands"',
        ".SH NAME",
        f"{name} \\- {_escape(parser.description or '')}",
        ".SH SYNOPSIS",
    ]
    commands = _subcommands(parser)
    for command, _help, _sub in commands:
        lines.append(f".B {name} {command}")
        lines.append("[\\fIoptions\\fR]")
        lines.append(".br")
    lines.append(".SH DESCRIPTION")
    if parser.epilog:
        lines.append(_escape(parser.epilog))
    lines.append(".SH COMMANDS")
    for command, help_text, _sub in commands:
        lines += [".TP", f".B {command}", _escape(help_text)]
    for command, _help, sub in commands:
        lines.append(f".SH {_escape(f'{name} {command}'.upper())}")
        if sub.description:
            lines += [_escape(sub.description), ".PP"]
        lines += _options(sub)
    lines.append(SECTIONS_AFTER.rstrip("\n"))
    return "\n".join(lines) + "\n"
