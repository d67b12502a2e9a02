"""Consul's own environment and address rules, as its Go client reads them
(hashicorp/consul api/api.go), and tokens that are malformed from any source."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncer import cli, config
from syncer.discovery.client import ConsulClient

TOKEN = "6f1d2a3b-0c4e-4f5a-8b9c-7d6e5f4a3b2c"  # test fixture


def load(env: dict[str, str], toml: str | None = None, tmp_path: Path | None = None) -> config.Settings:
    path = None
    if toml is not None:
        assert tmp_path is not None
        path = tmp_path / "syncer.toml"
        path.write_text(toml)
    return config.load(path, env=env)


# --- addresses and schemes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "value"),
    [("toml", "https://consul.example:8501"), ("env", "https://consul.example:8501")],
)
def test_https_in_an_address_from_any_source_keeps_tls(where: str, value: str, tmp_path: Path) -> None:
    """The scheme of an https:// address is never dropped (the token would travel in clear)."""
    if where == "toml":
        settings = load({}, f'[consul]\naddress = "{value}"\n', tmp_path)
    else:
        settings = load({"CONSUL_HTTP_ADDR": value})
    assert settings.consul.scheme == "https"
    assert ConsulClient(settings.consul).base_url == "https://consul.example:8501"


def test_https_in_the_file_survives_an_explicit_http_scheme_elsewhere(tmp_path: Path) -> None:
    """ "Never revert to http if TLS was explicitly requested" (api.go): an http:// address
    in the environment does not turn off the file's https."""
    settings = load({"CONSUL_HTTP_ADDR": "http://consul.example:8501"}, '[consul]\nscheme = "https"\n', tmp_path)
    assert settings.consul.scheme == "https"


@pytest.mark.parametrize(
    ("ssl", "address", "scheme"),
    [
        ("false", "https://127.0.0.1:8501", "https"),
        ("0", "https://127.0.0.1:8501", "https"),
        ("true", "127.0.0.1:8501", "https"),
        ("T", "http://127.0.0.1:8501", "https"),
        ("false", "127.0.0.1:8500", "http"),
    ],
)
def test_consul_http_ssl_only_turns_tls_on(ssl: str, address: str, scheme: str) -> None:
    settings = load({"CONSUL_HTTP_ADDR": address, "CONSUL_HTTP_SSL": ssl})
    assert settings.consul.scheme == scheme


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("[::1]:8500", "http://[::1]:8500"),
        ("https://[::1]:8501", "https://[::1]:8501"),
        ("[0:0:0:0:0:0:0:1]:8500", "http://[::1]:8500"),
        ("https://consul.example", "https://consul.example:443"),
        ("http://consul.example", "http://consul.example:80"),
    ],
)
def test_ipv6_and_portless_addresses(value: str, url: str) -> None:
    settings = load({"CONSUL_HTTP_ADDR": value})
    client = ConsulClient(settings.consul)
    assert client.base_url == url
    assert client._consul.http.base_uri == url  # what py-consul puts in front of every path


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("::1:8500", "must be in brackets"),
        ("unix:///var/run/consul.sock", "unix sockets are not supported"),
        ("https://consul.example:8501/consul", "reverse-proxy prefix"),
        ("ftp://consul.example:21", "scheme must be http or https"),
        ("consul.example", "the port may be left out only after"),
        ("[::1]:99999", "port must be"),
    ],
)
def test_addresses_consul_would_read_otherwise_are_refused_with_a_reason(value: str, reason: str) -> None:
    with pytest.raises(config.ConfigError, match=reason) as info:
        load({"CONSUL_HTTP_ADDR": value})
    assert info.value.key == "CONSUL_HTTP_ADDR"


# --- the other variables -------------------------------------------------------------------


def test_every_variable_consuls_client_reads_is_used(tmp_path: Path) -> None:
    """CONSUL_CAPATH, CONSUL_TLS_SERVER_NAME, CONSUL_HTTP_AUTH, CONSUL_NAMESPACE,
    CONSUL_PARTITION: none silently ignored."""
    capath = tmp_path / "cas"
    capath.mkdir()
    env = {
        "CONSUL_CAPATH": str(capath),
        "CONSUL_TLS_SERVER_NAME": "consul.example:8501",  # a port is dropped, as Consul does
        "CONSUL_HTTP_AUTH": "ops:pa:ss",
        "CONSUL_NAMESPACE": "team-a",
        "CONSUL_PARTITION": "part_1",
    }
    consul = load(env).consul
    assert consul.ca_path == capath
    assert consul.tls_server_name == "consul.example"
    assert consul.auth == ("ops", "pa:ss")
    assert (consul.namespace, consul.partition) == ("team-a", "part_1")
    assert "pa:ss" not in repr(consul)


def test_namespace_partition_and_server_name_also_come_from_the_file(tmp_path: Path) -> None:
    toml = '[consul]\nnamespace = "ns1"\npartition = "p1"\ntls_server_name = "consul.internal"\n'
    consul = load({}, toml, tmp_path).consul
    assert (consul.namespace, consul.partition, consul.tls_server_name) == ("ns1", "p1", "consul.internal")


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"CONSUL_NAMESPACE": "a b"}, "CONSUL_NAMESPACE"),
        ({"CONSUL_PARTITION": "x;y"}, "CONSUL_PARTITION"),
        ({"CONSUL_TLS_SERVER_NAME": "bad name"}, "CONSUL_TLS_SERVER_NAME"),
        ({"CONSUL_CAPATH": "/nonexistent/cas"}, "consul.ca_path"),
        ({"CONSUL_HTTP_SSL": "yes please"}, "CONSUL_HTTP_SSL"),
    ],
)
def test_invalid_values_of_those_variables_are_refused(env: dict[str, str], key: str) -> None:
    with pytest.raises(config.ConfigError) as info:
        load(env)
    assert info.value.key == key


# --- tokens ------------------------------------------------------------------------------


def test_the_token_file_wins_over_the_token_variable(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"{TOKEN}\n")
    consul = load({"CONSUL_HTTP_TOKEN": "other-token", "CONSUL_HTTP_TOKEN_FILE": str(token_file)}).consul
    assert consul.token == TOKEN
    assert consul.acl_source == "CONSUL_HTTP_TOKEN_FILE"


@pytest.mark.parametrize("content", [f"{TOKEN}\n", f"{TOKEN}\r\n", f"  {TOKEN}\t\n\n"])
def test_a_token_file_is_trimmed_as_consul_does(content: str, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(content)
    assert load({"CONSUL_HTTP_TOKEN_FILE": str(token_file)}).consul.token == TOKEN


MALFORMED = {
    "trailing newline": f"{TOKEN}\n",
    "leading space": f" {TOKEN}",
    "inner space": "abc def",
    "control character": "abc\x01def",
    "non-latin-1": "tök€n",
    "non-ascii latin-1": "tökén",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_a_malformed_token_in_the_environment_is_refused_naming_it(name: str) -> None:
    with pytest.raises(config.ConfigError) as info:
        load({"CONSUL_HTTP_TOKEN": MALFORMED[name]})
    assert info.value.key == "CONSUL_HTTP_TOKEN"
    assert MALFORMED[name].strip() not in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("source", ["CONSUL_HTTP_TOKEN_FILE", "consul.token_file", "--consul-token-file", "api"])
@pytest.mark.parametrize("content", ["abc def\n", "abc\x07def", "\n \n", "tök€n\n"])
def test_a_malformed_token_file_is_refused_naming_its_source(source: str, content: str, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(content)
    env: dict[str, str] = {}
    toml = ""
    overrides: dict[str, dict[str, str]] = {}
    if source == "CONSUL_HTTP_TOKEN_FILE":
        env["CONSUL_HTTP_TOKEN_FILE"] = str(token_file)
    elif source == "consul.token_file":
        toml = f'[consul]\ntoken_file = "{token_file}"\n'
    elif source == "--consul-token-file":
        overrides = {"consul": {"token_file": str(token_file)}}
    else:
        toml = f'mode = "api"\n[api]\ntoken_file = "{token_file}"\n'
    path = tmp_path / "syncer.toml"
    path.write_text(toml)
    with pytest.raises(config.ConfigError) as info:
        config.load(path, env=env, overrides=overrides)
    assert info.value.key == ("api.token_file" if source == "api" else source)
    assert str(token_file) in str(info.value)
    for part in ("abc", "def", "tök"):
        assert part not in str(info.value).replace(str(tmp_path), "")


def test_a_non_utf8_token_file_is_refused(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_bytes(b"\xff\xfetoken\n")
    with pytest.raises(config.ConfigError, match="not UTF-8"):
        load({"CONSUL_HTTP_TOKEN_FILE": str(token_file)})


# --- the command line --------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        status = cli.main(list(args))
    except SystemExit as exc:
        status = int(exc.code or 0)
    out = capsys.readouterr()
    return status, out.out, out.err


@pytest.mark.parametrize("argv", [["--version"]])
def test_version(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, *argv)
    assert status == 0
    assert out.startswith("syncer ")
    version = out.split()[1]
    status, helptext, _ = run(capsys, "--help")
    assert status == 0
    assert "--version" in helptext
    assert version in helptext


@pytest.mark.parametrize(("alias", "level"), [("warn", "warning"), ("err", "error"), ("warning", "warning")])
def test_log_level_aliases_as_in_consul_template(alias: str, level: str, tmp_path: Path) -> None:
    args = cli.build_parser().parse_args(["run", "--service", "web", "--log-level", alias])
    assert config.load(None, env={}, overrides=cli.overrides_from(args)).log.level == level
    assert load({}, f'[log]\nlevel = "{alias}"\n', tmp_path).log.level == level


def test_config_given_twice_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one, two = tmp_path / "one.toml", tmp_path / "two.toml"
    one.write_text('[services]\nnames = ["web"]\n')
    two.write_text('[services]\nnames = ["api"]\n')
    status, _, err = run(capsys, "once", "--dry-run", "--config", str(one), "--config", str(two))
    assert status == 2
    assert "--config given more than once" in err
    assert str(one) in err
    assert str(two) in err


@pytest.mark.parametrize("command", ["run", "once"])
def test_a_malformed_token_exits_2_with_one_line(
    command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", f"{TOKEN}\n")
    status, out, err = run(capsys, command, "--service", "web")
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1
    assert "CONSUL_HTTP_TOKEN" in err
    assert TOKEN not in err
