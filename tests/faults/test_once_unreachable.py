"""`syncer once` with Consul unreachable: exit status 1, one clear line, nothing touched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from syncer.testing.ports import free_port
from tests.stack import BOTH_MODES, Stack, write_config


@pytest.mark.parametrize("stack", BOTH_MODES, indirect=True)
def test_once_exits_1_with_one_line_and_touches_nothing(stack: Stack, tmp_path: Path) -> None:
    """After consul.once_timeout of retries: exit 1, a single stderr line naming Consul's
    address, the upstream file (reload) or the endpoint and its snapshot (api) untouched."""
    config = write_config(tmp_path / "once.toml", {"consul": {"once_timeout": 0.5}})
    address = f"127.0.0.1:{free_port()}"
    before = stack.fingerprint()
    done = subprocess.run(
        [sys.executable, "-m", "syncer", "once", "--config", str(config), *stack.agent_args(address)],
        capture_output=True, text=True, timeout=60, check=False, env=dict(os.environ),
    )  # fmt: skip
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("syncer once: reading service 'web': ")
    assert f"Consul at http://{address} unreachable: ConnectionError: [Errno 111] Connection refused" in lines[0]
    assert "HTTPConnectionPool" not in lines[0]  # what went wrong, not urllib3's internals
    assert done.stdout == ""
    assert stack.fingerprint() == before
    assert not stack.snapshot.exists()
