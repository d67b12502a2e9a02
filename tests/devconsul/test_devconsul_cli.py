"""The command line: honest --help, a real process on --listen, clean exit on SIGTERM."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

import pytest
import requests

from syncer.devconsul import cli
from syncer.testing.ports import free_port
from syncer.testing.wait import wait_until


def test_help_says_it_is_a_stand_in() -> None:
    parser = argparse.ArgumentParser(prog="syncer dev-consul")
    cli.add_arguments(parser)
    text = parser.format_help()
    assert "DEVELOPMENT STAND-IN" in text
    assert "NOT Consul" in text
    args = parser.parse_args([])
    assert args.listen == ("127.0.0.1", 8500)
    assert args.http_max_conns_per_client == 200


def test_listen_must_be_host_port() -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--listen", "8500"])


def test_process_serves_and_stops_on_sigterm(tmp_path: object) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DEV_CONSUL_ACL_TOKENS_FILE"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "syncer.devconsul",
            "--listen",
            f"127.0.0.1:{port}",
            "--dns-listen",
            "",
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        url = f"http://127.0.0.1:{port}/v1/status/leader"
        wait_until(
            lambda: requests.get(url, timeout=1).json() == "127.0.0.1:8300",
            timeout=15,
            message="dev-consul process answering",
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stdout is not None
        assert b"a development stand-in, not Consul" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_token_file_that_is_missing_fails_cleanly(tmp_path: object) -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--acl-token-file", "/nonexistent/tokens", "--listen", "127.0.0.1:1"])
    assert cli.run(args) == 2
