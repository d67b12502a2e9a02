"""`syncer run` does not import the dev Consul (thousands of lines a production agent never
runs): a real agent started with `python -X importtime`, up until it retries Consul."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from syncer.testing.wait import wait_until


def imported_modules(importtime: str) -> set[str]:
    """Module names from `-X importtime` lines: `import time: self | cumulative | name`."""
    names = set()
    for line in importtime.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def test_run_does_not_import_the_dev_consul(tmp_path: Path) -> None:
    out, err = tmp_path / "out.log", tmp_path / "err.log"
    command = [
        sys.executable,
        "-X",
        "importtime",
        "-m",
        "syncer",
        "run",
        "--consul-addr",
        "127.0.0.1:1",
        "--service",
        "web",
        "--output",
        str(tmp_path / "upstream.conf"),
        "--metrics-listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
    ]
    with out.open("w") as stdout, err.open("w") as stderr:
        agent = subprocess.Popen(command, stdout=stdout, stderr=stderr)
        try:
            # by its first failed Consul query the agent has imported all it runs with
            wait_until(lambda: "consul query failed" in out.read_text(), timeout=20, message="the agent running")
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=20)
    modules = imported_modules(err.read_text())
    assert "syncer.agent" in modules  # the measurement saw the agent's own imports
    assert not {name for name in modules if name.startswith("syncer.devconsul")}
