"""What listens where: the agent's /metrics + /healthz endpoint and nginx-example's admin
listener refuse anything but loopback (or a unix socket) unless explicitly allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncer import cli, config
from syncer.nginx_example import ExampleError, ExampleOptions, render_example

REMOTE = ["0.0.0.0:9105", "[::]:9105", "192.0.2.10:9105", "metrics.example.com:9105"]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    try:
        status = cli.main(list(args))
    except SystemExit as exc:
        status = int(exc.code or 0)
    out = capsys.readouterr()
    return status, out.out + out.err


@pytest.mark.parametrize("listen", REMOTE)
def test_the_agent_refuses_a_non_loopback_metrics_listen(listen: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`--metrics-listen` beyond loopback: exit 2 naming the override; nothing starts."""
    status, printed = run(capsys, "run", "--service", "web", "--metrics-listen", listen)
    assert status == 2
    assert "is not a loopback address; set observe.allow_remote = true to allow it" in printed


@pytest.mark.parametrize(
    "listen", ["127.0.0.1:0", "127.0.0.2:9105", "[::1]:9105", "localhost:9105", "unix:/run/s.sock"]
)
def test_loopback_and_unix_sockets_are_fine(listen: str) -> None:
    settings = config.load(None, env={}, overrides={"observe": {"listen": listen}})
    assert settings.observe.listen == listen


@pytest.mark.parametrize("listen", REMOTE)
def test_allow_remote_is_the_explicit_override(listen: str, tmp_path: Path) -> None:
    """`[observe] allow_remote = true` in the config file lets the operator choose otherwise."""
    toml = tmp_path / "syncer.toml"
    toml.write_text(f'[observe]\nlisten = "{listen}"\nallow_remote = true\n')
    assert config.load(toml, env={}).observe.listen == listen


ADMIN_REMOTE = ["0.0.0.0:8081", "8081", "[::]:8081", "10.0.0.1:8081", "*:8081"]


@pytest.mark.parametrize("admin", ADMIN_REMOTE)
def test_nginx_example_refuses_a_non_loopback_admin_listen(admin: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`syncer nginx-example --mode api --admin-listen <not loopback>`: exit 2, no config."""
    status, printed = run(capsys, "nginx-example", "--mode", "api", "--admin-listen", admin)
    assert status == 2
    assert "the admin API must listen on loopback or a unix socket" in printed
    assert "--admin-allow-remote overrides this" in printed
    assert "http {" not in printed


@pytest.mark.parametrize("admin", ADMIN_REMOTE)
def test_nginx_example_admin_allow_remote_is_the_explicit_override(
    admin: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, printed = run(capsys, "nginx-example", "--mode", "api", "--admin-listen", admin, "--admin-allow-remote")
    assert status == 0
    assert f"listen {admin};" in printed
    with pytest.raises(ExampleError, match="loopback"):
        render_example("api", ExampleOptions(admin_listen=admin))
