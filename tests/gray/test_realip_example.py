"""nginx-example's client-address option: realip only from trusted proxies, `nginx -t` clean."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from syncer.nginx_example import ExampleError, ExampleOptions, render_example
from syncer.testing.nginx import NginxProcess, has_lua_module, nginx_binary

NEEDS = pytest.mark.skipif(nginx_binary() is None or not has_lua_module(), reason="needs nginx with the Lua module")


@NEEDS
@pytest.mark.parametrize("mode", ["reload", "api"])
@pytest.mark.parametrize(
    ("client_address", "expected"),
    [
        (
            "x-forwarded-for",
            ["set_real_ip_from 10.0.0.0/8;", "real_ip_header X-Forwarded-For;", "real_ip_recursive on;"],
        ),
        ("proxy-protocol", ["proxy_protocol;", "set_real_ip_from 10.0.0.0/8;", "real_ip_header proxy_protocol;"]),
    ],
)
def test_realip_config_passes_nginx_t(tmp_path: Path, mode: Any, client_address: Any, expected: list[str]) -> None:
    upstream_conf = tmp_path / "upstream.conf"
    upstream_conf.write_text("upstream web { server 127.0.0.1:9 down; }\n")
    token = tmp_path / "admin.token"
    token.write_text("t0123456789abcdef\n")
    text = render_example(
        mode,
        ExampleOptions(
            listen="127.0.0.1:18080",
            admin_listen="127.0.0.1:18081",
            upstream_conf=str(upstream_conf),
            token_file=str(token),
            snapshot_file=None,
            client_address=client_address,
            trusted_proxies=("10.0.0.0/8",),
        ),
    )
    for line in expected:
        assert line in text
    checked = NginxProcess(tmp_path / "nginx", text).test_config()
    assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"client_address": "x-forwarded-for"}, "needs at least one trusted proxy"),
        ({"client_address": "x-forwarded-for", "trusted_proxies": ("10.0.0.1/8",)}, "has host bits set"),
        ({"client_address": "x-forwarded-for", "trusted_proxies": ("0.0.0.0/0; include x",)}, "trusted proxy"),
        ({"client_address": "header"}, "client_address: one of"),
    ],
)
def test_bad_realip_options_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ExampleError, match=message):
        render_example("reload", ExampleOptions(**changes))


def test_connection_address_adds_no_realip() -> None:
    text = render_example("reload", ExampleOptions())
    assert "real_ip" not in text
    assert "proxy_protocol" not in text
