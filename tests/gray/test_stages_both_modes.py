"""Stages 1-4 make the same decision in both modes: rendered geo/map vs the Lua matcher,
real nginx, requests from several loopback source addresses (and ::1)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from syncer.routing.kv_table import gray_table
from syncer.routing.render_gray import render_gray
from syncer.testing.nginx import has_lua_module, nginx_binary
from syncer.testing.wait import wait_until

from .cases import CASES, KV, Case
from .stack import EchoNginx, ask, ask_via_proxy_protocol, ipv6_loopback, rules_from

pytestmark = [
    pytest.mark.nginx,
    pytest.mark.skipif(nginx_binary() is None or not has_lua_module(), reason="needs nginx with the Lua module"),
]


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EchoNginx]:
    rules, rejections = rules_from(KV)
    assert rejections == ()
    nginx = EchoNginx(tmp_path_factory.mktemp("gray-echo"), entries=("web", "shop", "ranged"))
    nginx.write_rules(rules)
    nginx.start()
    yield nginx
    nginx.stop()


def test_ranges_mode_is_used_where_it_helps() -> None:
    text = render_gray(gray_table(e) for e in rules_from(KV)[0].entries)
    ranged = text.split("gray rules of entry ranged")[1]
    assert "ranges;" in ranged
    assert "127.0.0.8-127.0.0.64" in ranged
    web = text.split("gray rules of entry web")[1]
    assert "ranges;" not in web  # IPv6 entries: CIDR mode


@pytest.mark.parametrize("mode", ["reload", "api"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(echo: EchoNginx, case: Case, mode: str) -> None:
    if ":" in case.source and not ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    if case.via_trusted_proxy:
        port = echo.reload_xff_port if mode == "reload" else echo.api_xff_port
    else:
        port = echo.reload_port if mode == "reload" else echo.api_port
    reply = ask(port, f"/{case.entry}", source=case.source, host=case.host, headers=case.headers)
    assert (reply.status, reply.body) == (200, case.expect)


def test_a_list_change_moves_a_client_after_reload(tmp_path: Path) -> None:
    """Adding an address to the list sends that client to the list's pool (reload mode)."""
    addresses = ["127.0.0.2"]
    testers: dict[str, Any] = {"target": {"service": "web", "subset": "pre"}, "addresses": addresses}
    values = {"gray/web/lists/testers": testers}
    nginx = EchoNginx(tmp_path / "n", entries=("web",))
    nginx.write_rules(rules_from(values)[0])
    nginx.start()
    try:
        assert ask(nginx.reload_port, "/web", source="127.0.0.7").body == ""
        addresses.append("127.0.0.7")
        nginx.write_rules(rules_from(values)[0])
        assert nginx.nginx.test_config().returncode == 0
        nginx.nginx.reload()
        for port in (nginx.reload_port, nginx.api_port):  # old workers may take a moment to go
            wait_until(moved(port), timeout=10, message="127.0.0.7 on web.pre")
    finally:
        nginx.stop()


@pytest.mark.parametrize("mode", ["reload", "api"])
@pytest.mark.parametrize(
    ("source", "client", "expect"),
    [
        ("127.0.0.5", "10.1.2.3", "web.office"),  # a trusted proxy's PROXY header counts
        ("127.0.0.5", "2001:db8::7", "web.pre"),
        ("127.0.0.9", "127.0.0.2", ""),  # an untrusted peer's does not (its own address is in no list)
    ],
)
def test_proxy_protocol_from_trusted_proxies_only(
    echo: EchoNginx, mode: str, source: str, client: str, expect: str
) -> None:
    port = echo.reload_pp_port if mode == "reload" else echo.api_pp_port
    reply = ask_via_proxy_protocol(port, "/web", source=source, client=client)
    assert (reply.status, reply.body) == (200, expect)


def moved(port: int) -> Callable[[], bool]:
    return lambda: ask(port, "/web", source="127.0.0.7").body == "web.pre"
