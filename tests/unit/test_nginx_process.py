"""syncer.testing.NginxProcess.kill(): a crash that leaves nothing behind."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import pytest

from syncer.testing.nginx import NginxProcess, nginx_binary, process_alive
from syncer.testing.ports import free_port, port_open
from syncer.testing.wait import wait_until

pytestmark = pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (make bootstrap)")


def conf(port: int) -> str:
    return (
        "worker_processes 4;\nerror_log logs/error.log;\npid logs/nginx.pid;\n"
        "events { worker_connections 64; }\n"
        f"http {{ access_log off; server {{ listen 127.0.0.1:{port}; return 204; }} }}\n"
    )


@pytest.mark.parametrize("attempt", range(3))
def test_kill_leaves_no_worker_holding_the_port(tmp_path: Path, attempt: int) -> None:
    """The master dies first, so it cannot respawn workers that would be orphaned, still
    listening: after kill() the port is free and every worker we knew is gone."""
    port = free_port()
    nginx = NginxProcess(tmp_path / f"nginx-{attempt}", conf(port))
    nginx.start(wait_port=port)

    # The master listens before it forks: wait for all four workers.
    def four_workers() -> set[int] | None:
        found = {p.pid for p in nginx.workers()}
        return found if len(found) == 4 else None

    workers = wait_until(four_workers, timeout=5, message="4 workers")
    try:
        nginx.kill()
        wait_until(lambda: not port_open(port), timeout=3, message="nothing listening after kill()")
        assert not any(process_alive(pid) for pid in workers)
    finally:  # on failure, leave no orphan behind us either
        for pid in workers | holding(tmp_path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def holding(folder: Path) -> set[int]:
    """Live processes with a file open under ``folder`` (orphaned workers keep error.log)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and process_alive(int(entry.name)):
            with contextlib.suppress(OSError):
                if any(str(folder) in os.readlink(fd) for fd in (entry / "fd").iterdir()):
                    found.add(int(entry.name))
    return found
