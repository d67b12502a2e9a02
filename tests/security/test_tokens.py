"""Secrets: the Consul token comes only from the environment or a file, never from argv or
the TOML file, and neither it nor the admin token ever shows in the agent's log, its
command line, /metrics or /healthz."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from syncer import cli
from syncer.devconsul.server import DevConsul
from syncer.testing.backends import BackendFarm
from syncer.testing.consul import ConsulWriter
from syncer.testing.wait import wait_until
from tests.conftest import Agent, StartAgent
from tests.stack import NEEDS_LUA, Stack, events, healthz, metrics_url, register, wait_event, write_config

TOKEN = "6f1d2a3b-0c4e-4f5a-8b9c-7d6e5f4a3b2c"  # test fixtures
WRONG = "0a0b0c0d-dead-beef-0000-123456789abc"


@pytest.fixture
def acl_consul(backends: BackendFarm) -> Iterator[DevConsul]:
    with DevConsul(port=0, acl_tokens=[TOKEN]) as dev:
        writer = ConsulWriter(dev.url, token=TOKEN)
        register(writer, backends, "b1")
        writer.close()
        yield dev


def assert_nowhere(agent: Agent, secrets: list[str]) -> None:
    """Not in the log, the process's argv, /metrics or /healthz."""
    url = metrics_url(agent)
    cmdline = Path(f"/proc/{agent.proc.pid}/cmdline").read_bytes().decode()
    exposed = {
        "log": agent.log(),
        "cmdline": cmdline,
        "metrics": requests.get(f"{url}/metrics", timeout=5).text,
        "healthz": str(healthz(url)[1]),
    }
    for secret in secrets:
        for where, text in exposed.items():
            assert secret not in text, f"a secret leaked into the agent's {where}"


@NEEDS_LUA
@pytest.mark.parametrize("stack", ["api"], indirect=True)
@pytest.mark.parametrize("source", ["file", "env"])
def test_tokens_are_used_but_never_shown(
    source: str, stack: Stack, acl_consul: DevConsul, backends: BackendFarm, start_agent: StartAgent
) -> None:
    """ACL mode with debug logging, through a 403 with a wrong token, a SIGHUP and a sync:
    neither the right or wrong Consul token nor the admin token appears anywhere."""
    token_file = stack.root / "consul.token"
    token_file.write_text(WRONG + "\n")
    env: dict[str, str] = {}
    extra = ["--log-level", "debug"]
    if source == "file":
        extra += ["--consul-token-file", str(token_file)]
    else:
        env["CONSUL_HTTP_TOKEN_FILE"] = str(token_file)
    agent = start_agent(stack.agent_args(acl_consul.address, *extra), env=env)
    wait_event(agent, "consul query failed")  # 403 ACL not found, with the wrong token
    assert_nowhere(agent, [WRONG, stack.admin_token])

    if source == "file":
        token_file.write_text(TOKEN + "\n")
        agent.signal(signal.SIGHUP)
        wait_event(agent, "configuration reloaded")
    else:  # the token straight from the environment
        agent.stop()
        agent = start_agent(stack.agent_args(acl_consul.address, *extra), env={"CONSUL_HTTP_TOKEN": TOKEN})
    stack.wait_serving(backends, {"b1"}, message="synced with the valid token")
    assert_nowhere(agent, [TOKEN, WRONG, stack.admin_token])


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """`syncer ARGS` in-process: (exit status, everything printed)."""
    try:
        status = cli.main(list(args))
    except SystemExit as exc:
        status = int(exc.code or 0)
    out = capsys.readouterr()
    return status, out.out + out.err


@pytest.mark.parametrize("flag", ["--consul-token", "--token", "--api-token"])
@pytest.mark.parametrize("command", ["run", "once"])
def test_a_token_on_the_command_line_is_refused_without_echo(
    command: str, flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A token flag (what consul-template and the Consul CLI accept) is refused with exit 2
    and never echoed, nor taken as a prefix of --consul-token-file / --api-token-file."""
    for argv in ([flag, TOKEN], [f"{flag}={TOKEN}"]):
        status, printed = run(capsys, command, "--service", "web", *argv)
        assert status == 2
        assert f"{flag}: tokens are never read from the command line" in printed
        assert TOKEN not in printed


@pytest.mark.parametrize("section", ["consul", "api"])
def test_the_config_file_cannot_hold_a_token(section: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A token in the TOML file is refused (exit 2), without echoing it."""
    config = tmp_path / "syncer.toml"
    config.write_text(f'[{section}]\ntoken = "{TOKEN}"\n')
    status, printed = run(capsys, "run", "--config", str(config), "--service", "web")
    assert status == 2
    assert f"invalid setting {section}.token = '<hidden>': secrets are not read from the config" in printed
    assert TOKEN not in printed


# --- malformed tokens and redaction by value (issue 9, part 2) -------------------------

MALFORMED_ENV = {
    "trailing newline": f"{TOKEN}\n",  # $(cat file) keeps none, $'...\n' or a heredoc does
    "leading space": f" {TOKEN}",
    "non-latin-1": f"{TOKEN[:8]}€{TOKEN[9:]}",
}


def syncer_run(args: list[str], env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CONSUL_")}
    return subprocess.run(
        [sys.executable, "-m", "syncer", "run", "--service", "web", "--metrics-listen", "", *args],
        capture_output=True, text=True, timeout=timeout, check=False, env={**clean, **env},
    )  # fmt: skip


@pytest.mark.parametrize("name", sorted(MALFORMED_ENV))
def test_a_malformed_token_variable_exits_2_naming_the_source_never_the_value(name: str) -> None:
    """Before: every query failed with an HTTP-library error quoting the header (logged and
    put on /healthz), or the watch crashed every second. Now nothing starts."""
    value = MALFORMED_ENV[name]
    done = syncer_run([], {"CONSUL_HTTP_TOKEN": value})
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert "CONSUL_HTTP_TOKEN" in done.stderr
    assert value.strip()[:12] not in done.stderr


@pytest.mark.parametrize("source", ["CONSUL_HTTP_TOKEN_FILE", "--consul-token-file", "consul.token_file", "api"])
def test_a_malformed_token_file_exits_2_naming_the_source_never_the_value(source: str, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"{TOKEN[:18]} {TOKEN[19:]}\n")  # a space inside
    token_file.chmod(0o600)
    args: list[str] = []
    env: dict[str, str] = {}
    if source == "CONSUL_HTTP_TOKEN_FILE":
        env[source] = str(token_file)
    elif source == "--consul-token-file":
        args += [source, str(token_file)]
    elif source == "consul.token_file":
        args += ["--config", str(write_config(tmp_path / "c.toml", {"consul": {"token_file": str(token_file)}}))]
    else:
        args += ["--mode", "api", "--api-token-file", str(token_file)]
    done = syncer_run(args, env)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert ("api.token_file" if source == "api" else source) in done.stderr
    assert str(token_file) in done.stderr
    assert TOKEN[:18] not in done.stderr
    assert TOKEN[19:] not in done.stderr


def test_a_token_file_with_a_trailing_newline_is_used(
    stack: Stack, acl_consul: DevConsul, backends: BackendFarm, start_agent: StartAgent
) -> None:
    """Consul trims a token file; so does syncer (the newline is how editors leave it)."""
    token_file = stack.root / "consul.token"
    token_file.write_text(f"{TOKEN}\r\n\n")
    agent = start_agent(stack.agent_args(acl_consul.address), env={"CONSUL_HTTP_TOKEN_FILE": str(token_file)})
    stack.wait_serving(backends, {"b1"})
    assert_nowhere(agent, [TOKEN])


def test_a_token_quoted_back_by_consul_is_redacted_everywhere(
    stack: Stack, acl_consul: DevConsul, backends: BackendFarm, start_agent: StartAgent
) -> None:
    """A server (or a proxy in front of it) that quotes the token in an error answer or a
    non-JSON page: the text goes to the log, /healthz's consul_error and the metrics,
    always with the token cut out."""
    health = "/v1/health/service/web"
    acl_consul.faults.error(health, status=500, body=f"ACL not found for token {TOKEN}")
    agent = start_agent(stack.agent_args(acl_consul.address, "--log-level", "debug"), env={"CONSUL_HTTP_TOKEN": TOKEN})
    failed = wait_event(agent, "consul query failed")
    assert "ACL not found for token <redacted>" in failed[0]["error"]
    url = metrics_url(agent)
    wait_until(lambda: "<redacted>" in str(healthz(url)[1].get("consul_error", "")), message="/healthz quotes it")
    assert_nowhere(agent, [TOKEN])

    acl_consul.faults.clear()
    acl_consul.faults.non_json(health, body=f"<html>bad gateway {TOKEN}</html>")
    wait_event(agent, "consul query failed", count=1, timeout=15)
    wait_until(
        lambda: any("is not JSON" in e["error"] for e in events(agent, "consul query failed")),
        message="the non-JSON answer was reported",
    )
    assert_nowhere(agent, [TOKEN])
    acl_consul.faults.clear()
    stack.wait_serving(backends, {"b1"}, message="synced once the server answers properly")
    assert_nowhere(agent, [TOKEN])
