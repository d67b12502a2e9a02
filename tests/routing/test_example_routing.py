"""`syncer nginx-example --routing-entry`: the routing blocks of both modes, and refusals."""

from __future__ import annotations

import pytest

from syncer.nginx_example import ExampleError, ExampleOptions, render_example


def test_reload_mode_includes_the_routing_files() -> None:
    text = render_example("reload", ExampleOptions(routing_entries=("web", "shop-api"), upstream_conf="/x/up.conf"))
    assert "include /x/syncer-routing[.]conf;" in text
    assert "include /x/syncer-routing-shop-api[.]location;" in text
    assert text.count("listen 127.0.0.1:8082") == 2
    assert "listen 127.0.0.1:8082 default_server;" in text


def test_api_mode_routes_in_lua_over_one_generic_upstream() -> None:
    text = render_example("api", ExampleOptions(routing_entries=("web",), routing_listen="127.0.0.1:9000"))
    assert 'rewrite_by_lua_block { require("syncer.router").route("web") }' in text
    assert "balance(ngx.var.syncer_pool)" in text
    assert "proxy_pass http://syncer_routed;" in text


def test_without_entries_nothing_changes() -> None:
    assert "syncer-routing" not in render_example("reload", ExampleOptions())
    assert "syncer.router" not in render_example("api", ExampleOptions())


@pytest.mark.parametrize("entry", ["we b", 'web"', "web;", "", "-web"])
def test_bad_entry_names_are_refused(entry: str) -> None:
    with pytest.raises(ExampleError, match="routing_entries"):
        render_example("reload", ExampleOptions(routing_entries=(entry,)))
