"""Every resolved secret is cut out of every log line, in whatever field it hides."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from syncer import config, logs

SECRET = "b1946ac9-2f0e-4c9b-a1f3-0d5e7c8a6b42"  # test fixture


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    logs.configure("debug", "json", stream=out)
    yield out
    structlog.reset_defaults()


class Opaque:
    def __str__(self) -> str:
        return f"Opaque(header={SECRET})"


def test_a_registered_secret_is_redacted_in_every_field(stream: io.StringIO) -> None:
    logs.register_secret(SECRET)
    log = structlog.get_logger("test")
    log.warning(f"event quoting {SECRET}", error=f"Invalid header value b'{SECRET}\\n'")
    log.info("nested", detail={"headers": {"X-Consul-Token": SECRET}, "list": [SECRET, 1]}, obj=Opaque())
    try:
        raise ValueError(f"header {SECRET!r} refused")
    except ValueError:
        log.exception("watch crashed; restarting it")
    text = stream.getvalue()
    assert SECRET not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["event"] == "event quoting <redacted>"
    assert lines[0]["error"] == "Invalid header value b'<redacted>\\n'"
    assert lines[1]["detail"]["list"] == ["<redacted>", 1]
    assert lines[1]["obj"] == "Opaque(header=<redacted>)"
    assert "ValueError: header '<redacted>' refused" in lines[2]["exception"]


def test_config_registers_every_token_it_resolves(stream: io.StringIO, tmp_path: Path) -> None:
    """The Consul token (env or file), the basic-auth password and the admin token."""
    consul_token, password, admin = "c0ffee00-1111-2222-3333-444455556666", "hunter2-pw", "adm1n-t0ken-0123456789"
    admin_file = tmp_path / "admin.token"
    admin_file.write_text(admin + "\n")
    toml = tmp_path / "syncer.toml"
    toml.write_text(f'mode = "api"\n[api]\ntoken_file = "{admin_file}"\n')
    config.load(toml, env={"CONSUL_HTTP_TOKEN": consul_token, "CONSUL_HTTP_AUTH": f"ops:{password}"})
    structlog.get_logger("test").info("values", a=consul_token, b=f"pw={password}", c=[admin])
    text = stream.getvalue()
    for secret in (consul_token, password, admin):
        assert secret not in text
    assert text.count("<redacted>") == 3
