"""Property: whatever Consul holds — arbitrary service names, addresses, ports, tags and
meta, nginx syntax, unicode, whitespace, huge values — each instance either reaches a
rendered upstream.conf that a real `nginx -t` accepts, or is rejected with a logged
reason. Injected syntax never reaches the file. One `nginx -t` per example covers a
whole catalog (several services, many instances)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from syncer import config, validate
from syncer.agent import log_rejections
from syncer.discovery.normalize import Rules, health_entries
from syncer.model import Server
from syncer.planning.desired import desired_state
from syncer.sinks.render import Renderer
from tests.property.nginx_check import NginxChecker, foreign_lines
from tests.property.strategies import PROPERTY, SERVICE_NAMES, health_entry
from tests.stack import NEEDS_NGINX

pytestmark = NEEDS_NGINX


@pytest.fixture(scope="module")
def checker(tmp_path_factory: pytest.TempPathFactory) -> NginxChecker:
    return NginxChecker(tmp_path_factory.mktemp("nginx-t"))


@st.composite
def catalogs(draw: st.DrawFn) -> dict[str, list[Any]]:
    names = draw(st.lists(SERVICE_NAMES, min_size=1, max_size=3, unique=True))
    return {name: draw(st.lists(health_entry(name), max_size=6)) for name in names}


def selected(names: list[str]) -> tuple[tuple[str, ...], config.ConfigError | None]:
    try:
        return config.from_mapping({"services": {"names": names}}).services.names, None
    except config.ConfigError as exc:
        return (), exc


def assert_safe(server: Server) -> None:
    """What nginx receives is one plain token; tags, Meta and the ID ride along as any text
    (the renderer checks them if a template prints them)."""
    validate.safe_token("rendered value", server.address)
    for value in (server.instance_id, *server.tags, *(x for kv in server.meta for x in kv)):
        assert isinstance(value, str)


@PROPERTY
@given(catalog=catalogs(), include_warning=st.booleans())
def test_every_instance_renders_valid_nginx_or_is_rejected_with_a_reason(
    checker: NginxChecker, catalog: dict[str, list[Any]], include_warning: bool
) -> None:
    """Names the config refuses never get that far; for the rest, every entry ends up as a
    server, a logged rejection, or skipped (warning); the file passes `nginx -t`."""
    selection, refused = selected(list(catalog))
    if refused is not None:  # a name the config refuses never reaches Consul, let alone nginx
        assert refused.key == "services.names"
        return
    rules = Rules(include_warning=include_warning, allow_hostnames=True)
    services: dict[str, tuple[Server, ...]] = {}
    for name in selection:
        entries = catalog[name]
        result = health_entries(name, entries, rules)
        assert len(result.servers) + len(result.rejections) + result.skipped_warning == len(entries)
        with capture_logs() as logged:
            log_rejections(result.rejections)
        assert len(logged) == len(result.rejections)
        for record, rejection in zip(logged, result.rejections, strict=True):
            assert record["event"] == "instance rejected"
            assert record["reason"] == rejection.reason != ""
            assert record["field"] == rejection.field != ""
        for server in result.servers:
            assert_safe(server)
        services[name] = result.servers

    rendered = Renderer().render(desired_state(services))
    assert foreign_lines(rendered) == []
    ok, output = checker.check(rendered)
    assert ok, f"nginx -t refused:\n{output}\n{rendered}"
