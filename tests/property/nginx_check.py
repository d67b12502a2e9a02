"""A real `nginx -t` on a rendered upstream file, and the grammar a rendered file may use."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from syncer.testing.nginx import nginx_binary

# Every line the default template can produce; anything else is injected syntax.
_LINE = re.compile(
    r"(# [^\n]*"
    r"|upstream [A-Za-z0-9][A-Za-z0-9_.-]{0,127} \{"
    r"|    server (\[[0-9a-f:.]+\]|[0-9.]+|[a-z0-9.-]+):[0-9]{1,5}"
    r"( weight=[0-9]+)?( max_fails=[0-9]+)?( fail_timeout=[0-9]+s)?( max_conns=[0-9]+)?( backup)?( down)?;"
    r"|    # [^\n]*"
    r"|    keepalive [0-9]+;"
    r"|\}"
    r"|)"
)


def foreign_lines(text: str) -> list[str]:
    """Lines of a rendered file that the template's grammar does not allow."""
    return [line for line in text.split("\n") if not _LINE.fullmatch(line)]


class NginxChecker:
    """`nginx -t` on one rendered upstream file, under a prefix of its own."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        (prefix / "logs").mkdir(parents=True, exist_ok=True)
        self.upstream_conf = prefix / "upstream.conf"
        self.conf = prefix / "nginx.conf"
        self.conf.write_text(
            "pid logs/nginx.pid;\nerror_log logs/error.log;\nevents {}\n"
            f"http {{\n    include {self.upstream_conf};\n}}\n"
        )
        self.binary = nginx_binary() or "nginx"
        self.runs = 0

    def check(self, rendered: str) -> tuple[bool, str]:
        self.upstream_conf.write_text(rendered)
        self.runs += 1
        done = subprocess.run(
            [self.binary, "-p", str(self.prefix), "-c", str(self.conf), "-t", "-q"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return done.returncode == 0, done.stderr
