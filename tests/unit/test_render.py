"""Rendering upstream.conf: deterministic, never empty, never nginx syntax from data."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncer.model import Desired, Server, make_upstream
from syncer.sinks.render import PLACEHOLDER, Renderer, RenderError


def desired(**upstreams: list[Server]) -> Desired:
    return Desired({name: make_upstream(name, servers) for name, servers in upstreams.items()})


def test_default_template_renders_every_parameter() -> None:
    text = Renderer().render(
        desired(
            web=[
                Server("10.0.0.1", 80, weight=3, max_fails=2, fail_timeout=5, max_conns=10),
                Server("2001:db8::2", 8080, backup=True),
                Server("10.0.0.3", 80, down=True),
            ]
        )
    )
    assert "upstream web {" in text
    assert "    server 10.0.0.1:80 weight=3 max_fails=2 fail_timeout=5s max_conns=10;" in text
    assert "    server [2001:db8::2]:8080 backup;" in text
    assert "    server 10.0.0.3:80 down;" in text


def test_an_upstream_without_healthy_instances_gets_a_down_placeholder() -> None:
    text = Renderer().render(desired(web=[]))
    assert f"server {PLACEHOLDER} down;" in text
    block = text[text.index("upstream web {") :]
    assert "server" in block.split("}")[0]


def test_output_is_deterministic_whatever_the_input_order() -> None:
    servers = [Server(f"10.0.0.{i}", 80 + i) for i in range(10)]
    one = Renderer().render(desired(b=servers, a=servers[:3]))
    two = Renderer().render(desired(a=list(reversed(servers[:3])), b=list(reversed(servers))))
    assert one == two
    assert one.index("upstream a {") < one.index("upstream b {")


def test_a_user_template_cannot_print_nginx_syntax(tmp_path: Path) -> None:
    """finalize re-checks every printed value, whatever the template does: the server whose
    value it is goes, the rest stays."""
    template = tmp_path / "t.j2"
    template.write_text(
        "{% for u in upstreams %}{% for s in u.servers %}{{ s.address }} {{ s.meta | join(' ') }}\n"
        "{% endfor %}{% endfor %}"
    )
    renderer = Renderer(template)
    out = renderer.render(desired(web=[Server("10.0.0.1", 80, meta=(("a", "b"),)), Server("10.0.0.2", 80)]))
    assert out == "10.0.0.2 \n"
    assert [(r.service, r.reason) for r in renderer.refusals] == [("web", 'contains "\'", which is nginx syntax')]


def test_a_value_printed_outside_any_server_still_fails_the_render(tmp_path: Path) -> None:
    """Nothing to leave out: the whole render is refused (the previous file stays)."""
    template = tmp_path / "t.j2"
    template.write_text("{{ 'a;b' }}{% for u in upstreams %}{{ u.name }}{% endfor %}")
    with pytest.raises(RenderError, match="nginx syntax"):
        Renderer(template).render(desired(web=[Server("10.0.0.1", 80)]))


def test_a_user_template_may_print_tags_one_by_one(tmp_path: Path) -> None:
    template = tmp_path / "t.j2"
    template.write_text(
        "{% for u in upstreams %}{% for s in u.servers %}{% for t in s.tags %}# {{ t }}\n"
        "{% endfor %}{% endfor %}{% endfor %}"
    )
    out = Renderer(template).render(desired(web=[Server("10.0.0.1", 80, tags=("canary", "v2"))]))
    assert out == "# canary\n# v2\n"


def test_template_errors_are_render_errors_naming_the_file(tmp_path: Path) -> None:
    template = tmp_path / "broken.j2"
    template.write_text("{% for u in upstreams %}")
    with pytest.raises(RenderError, match=r"broken\.j2"):
        Renderer(template).render(desired(web=[]))
    undefined = tmp_path / "undef.j2"
    undefined.write_text("{{ nonsense.field }}")
    with pytest.raises(RenderError):
        Renderer(undefined).render(desired(web=[]))
