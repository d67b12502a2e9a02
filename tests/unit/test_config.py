"""Settings: defaults ← TOML ← Consul's environment variables ← flags; one clear error per bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncer import config
from syncer.cli import build_parser, overrides_from


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "syncer.toml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    settings = config.load(None, env={})
    assert settings.mode == "reload"
    assert settings.consul.address == "127.0.0.1:8500"
    assert settings.consul.wait == 300.0
    assert settings.quiescence.resolved("reload") == (1.0, 5.0)
    assert settings.quiescence.resolved("api") == (0.0, 0.0)


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
mode = "reload"
[consul]
address = "10.1.1.1:8500"
wait = 60
[services]
names = ["web"]
[reload]
output = "/tmp/from-file.conf"
""",
    )
    env = {"CONSUL_HTTP_ADDR": "https://consul.local:8501"}
    settings = config.load(path, env=env)
    assert settings.consul.address == "consul.local:8501"
    assert settings.consul.scheme == "https"
    assert settings.consul.wait == 60.0
    assert settings.reload.output == Path("/tmp/from-file.conf")
    flags = overrides_from(
        build_parser().parse_args(
            ["run", "--service", "api", "--output", "/tmp/flag.conf", "--consul-addr", "127.0.0.1:9"]
        )
    )
    settings = config.load(path, env=env, overrides=flags)
    assert settings.services.names == ("api",)
    assert settings.reload.output == Path("/tmp/flag.conf")
    assert settings.consul.address == "127.0.0.1:9"


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('mode = "fast"', "mode"),
        ("[consul]\nwait = -1", "consul.wait"),
        ("[consul]\nwait = 601", "consul.wait"),
        ('[consul]\naddress = "nope"', "consul.address"),
        ("[consul]\nmax_connections = 500", "consul.max_connections"),
        ('[consul]\ntoken = "s3cr3t"', "consul.token"),
        ("[consul]\nwiat = 5", "consul.wiat"),
        ('[services]\nnames = ["ok", "bad;name"]', "services.names"),
        ('[services]\ntags = ["a b"]', "services.tags"),
        ("[reload]\nreload_command = []", "reload.reload_command"),
        ("[quiescence]\nmin = 5\nmax = 1", "quiescence.max"),
        ('[reload]\ntemplate = "/nonexistent.j2"', "reload.template"),
        ('[log]\nlevel = "loud"', "log.level"),
        ("surprise = 1", "surprise"),
        ("[consul\n", "--config"),
    ],
)
def test_invalid_settings_name_the_key_and_reason(tmp_path: Path, toml: str, key: str) -> None:
    with pytest.raises(config.ConfigError) as info:
        config.load(write(tmp_path, toml), env={})
    assert info.value.key == key
    assert key in str(info.value)
    assert ": " in str(info.value)


def test_secrets_never_appear_in_errors(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError) as info:
        config.load(write(tmp_path, '[consul]\ntoken = "s3cr3t"'), env={})
    assert "s3cr3t" not in str(info.value)


def test_token_from_env_or_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    assert config.load(None, env={"CONSUL_HTTP_TOKEN_FILE": str(token_file)}).consul.token == "from-file"
    # CONSUL_HTTP_TOKEN_FILE wins over CONSUL_HTTP_TOKEN, as in Consul's client (api/api.go).
    assert (
        config.load(None, env={"CONSUL_HTTP_TOKEN": "from-env", "CONSUL_HTTP_TOKEN_FILE": str(token_file)}).consul.token
        == "from-file"
    )
    # A token-file flag wins over the environment, as flags do.
    settings = config.load(
        None, env={"CONSUL_HTTP_TOKEN": "from-env"}, overrides={"consul": {"token_file": str(token_file)}}
    )
    assert settings.consul.token == "from-file"
    assert "from-file" not in repr(settings)


def test_empty_token_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "token"
    empty.write_text("\n")
    with pytest.raises(config.ConfigError, match="empty"):
        config.load(None, env={"CONSUL_HTTP_TOKEN_FILE": str(empty)})


def test_tls_settings_from_environment(tmp_path: Path) -> None:
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    env = {
        "CONSUL_CACERT": str(tmp_path / "ca.pem"),
        "CONSUL_CLIENT_CERT": str(tmp_path / "cert.pem"),
        "CONSUL_CLIENT_KEY": str(tmp_path / "key.pem"),
        "CONSUL_HTTP_SSL_VERIFY": "false",
    }
    consul = config.load(None, env=env).consul
    assert consul.ca_file == tmp_path / "ca.pem"
    assert consul.cert_file == tmp_path / "cert.pem"
    assert consul.verify is False


def test_reload_commands_default_to_the_nginx_binary_prefix_and_conf() -> None:
    settings = config.load(
        None,
        env={},
        overrides={"reload": {"nginx": "/usr/sbin/nginx", "nginx_prefix": "/p", "nginx_conf": "/p/n.conf"}},
    )
    assert settings.reload.resolved_test_command() == ["/usr/sbin/nginx", "-p", "/p", "-c", "/p/n.conf", "-t", "-q"]
    assert settings.reload.resolved_reload_command() == [
        "/usr/sbin/nginx",
        "-p",
        "/p",
        "-c",
        "/p/n.conf",
        "-s",
        "reload",
    ]


def test_api_mode_needs_its_token_file(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match=r"api\.token_file"):
        config.load(None, env={}, overrides={"mode": "api"})


def test_the_shipped_example_config_is_valid_and_matches_the_defaults() -> None:
    """examples/syncer.toml documents every key with its default; it must load as-is."""
    example = Path(__file__).resolve().parents[2] / "examples" / "syncer.toml"
    settings = config.load(example, env={})
    defaults = config.load(None, env={})
    assert settings.consul == defaults.consul
    assert settings.reload == defaults.reload
    assert settings.api == defaults.api
    assert settings.safety == defaults.safety
    assert settings.observe == defaults.observe
    assert settings.services.names == ("web",)
