"""Secrets: the Consul token comes only from the environment or a file, never from argv or
the TOML file, and neither it nor the admin token ever shows in the agent's log, its
command line, /metrics or /healthz."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from syncer import cli
from syncer.devconsul.server import DevConsul
from syncer.testing.backends import BackendFarm
from syncer.testing.consul import ConsulWriter
from tests.conftest import Agent, StartAgent
from tests.stack import NEEDS_LUA, Stack, healthz, metrics_url, register, wait_event

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
