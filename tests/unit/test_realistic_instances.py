"""Instances shaped like a real cluster's are kept: only what reaches nginx is judged.

Data from tests/property/realistic.py: the Consul UI's API double's health answers, and
the Traefik/Fabio tags, URLs, JSON, non-ASCII and empty values, and 64 Meta keys of 512
characters that operators' tooling registers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from syncer.discovery.normalize import RejectionMemo, Rules, health_entries
from syncer.model import Desired, Server, make_upstream
from syncer.sinks.render import PLACEHOLDER, Renderer
from tests.property.realistic import REGISTRATIONS, TRAEFIK_RULE, ui_mock_health_answer


def entry(instance: str, address: str, tags: list[str], meta: dict[str, str]) -> dict[str, Any]:
    return {
        "Node": {"Node": "n1", "Address": address, "Meta": {"consul-network-segment": ""}},
        "Service": {"ID": instance, "Service": "web", "Address": address, "Port": 8080, "Tags": tags, "Meta": meta},
        "Checks": [{"CheckID": "serfHealth", "Status": "passing"}],
    }


def test_every_instance_of_the_ui_mock_answer_is_kept() -> None:
    """48 healthy instances with URLs, empty values, Traefik rules and spaces in tags/Meta:
    all 48 become servers (before: 38 were dropped as "nginx syntax")."""
    body = ui_mock_health_answer("web", 48)
    result = health_entries("web", body, Rules())
    assert result.rejections == ()
    assert len(result.servers) == 48
    first = next(s for s in result.servers if s.instance_id == "web-with-id")
    assert TRAEFIK_RULE in first.tags
    meta = dict(first.meta)
    assert meta["consul-dashboard-url"].endswith("?id={{Service}}")


@pytest.mark.parametrize("name", sorted(REGISTRATIONS))
def test_registrations_ride_along_and_render(name: str) -> None:
    tags, meta = REGISTRATIONS[name]
    result = health_entries("web", [entry(f"web-{name}", "10.0.0.1", tags, meta)], Rules())
    assert result.rejections == ()
    (server,) = result.servers
    assert server.tags == tuple(tags)
    assert dict(server.meta) == meta
    text = Renderer().render(Desired({"web": make_upstream("web", result.servers)}))
    assert "    server 10.0.0.1:8080;" in text


def test_documented_nginx_meta_keys_are_still_judged() -> None:
    """The values that do reach nginx keep their rules, next to harmless data."""
    meta = {**REGISTRATIONS["json"][1], "nginx_max_fails": "3; server 6.6.6.6:80"}
    result = health_entries("web", [entry("web-1", "10.0.0.1", [TRAEFIK_RULE], meta)], Rules())
    assert result.servers == ()
    assert result.rejections[0].field == "Service.Meta.nginx_max_fails"


TAG_TEMPLATE = (
    "{% for u in upstreams %}upstream {{ u.name }} {\n"
    "{% for s in u.servers %}    server {{ s.endpoint }}; # {{ s.tags | first }}\n{% endfor %}"
    "{% if not u.servers %}    server {{ placeholder }} down;\n{% endif %}}\n{% endfor %}"
)


def servers_with_first_tags(*tags: str) -> list[Server]:
    return [Server(f"10.0.0.{i + 1}", 80, instance_id=f"web-{i + 1}", tags=(tag,)) for i, tag in enumerate(tags)]


def test_a_template_printing_a_tag_drops_only_that_instance(tmp_path: Path) -> None:
    """The refused server line goes, with one log line naming service, instance, field,
    value and reason; the other servers render. A second render logs nothing new."""
    template = tmp_path / "tags.j2"
    template.write_text(TAG_TEMPLATE)
    renderer = Renderer(template)
    desired = Desired({"web": make_upstream("web", servers_with_first_tags("canary", TRAEFIK_RULE, "v2"))})
    with capture_logs() as logs:
        text = renderer.render(desired)
        again = renderer.render(desired)
    assert text == again
    assert "server 10.0.0.1:80; # canary" in text
    assert "server 10.0.0.3:80; # v2" in text
    assert "10.0.0.2" not in text
    refused = [e for e in logs if e["event"].startswith("instance left out")]
    assert len(refused) == 1
    assert refused[0]["service"] == "web"
    assert refused[0]["instance"] == "web-2"
    assert refused[0]["field"] == "Service.Tags[0]"
    assert refused[0]["value"] == TRAEFIK_RULE
    assert "nginx syntax" in refused[0]["reason"]


def test_a_refusal_that_goes_and_comes_back_is_logged_again(tmp_path: Path) -> None:
    template = tmp_path / "tags.j2"
    template.write_text(TAG_TEMPLATE)
    renderer = Renderer(template)
    bad = Desired({"web": make_upstream("web", servers_with_first_tags("ok", "a b"))})
    good = Desired({"web": make_upstream("web", servers_with_first_tags("ok", "fine"))})
    with capture_logs() as logs:
        for desired in (bad, bad, good, bad):
            renderer.render(desired)
    assert sum(e["event"].startswith("instance left out") for e in logs) == 2


def test_an_upstream_whose_every_server_is_refused_renders_the_placeholder(tmp_path: Path) -> None:
    template = tmp_path / "tags.j2"
    template.write_text(TAG_TEMPLATE)
    renderer = Renderer(template)
    desired = Desired(
        {
            "web": make_upstream("web", servers_with_first_tags("a b", "{")),
            "api": make_upstream("api", servers_with_first_tags("fine")),
        }
    )
    with capture_logs() as logs:
        text = renderer.render(desired)
    web = text[text.index("upstream web {") :]
    assert f"server {PLACEHOLDER} down;" in web.split("}")[0]
    assert "server 10.0.0.1:80; # fine" in text
    assert renderer.emptied == frozenset({"web"})
    emptied = [e for e in logs if e["event"].startswith("every instance of the service was refused")]
    assert [(e["service"], e["refused"], e["log_level"]) for e in emptied] == [("web", 2, "error")]


def test_rejection_memo_reports_each_rejection_once_while_it_lasts() -> None:
    """For the agent's log: a still-rejected instance is not news on the next answer."""
    bad = entry("web-bad", "10.0.0.1;", [], {})
    good = entry("web-good", "10.0.0.2", [], {})
    memo = RejectionMemo()
    first = health_entries("web", [bad, good], Rules()).rejections
    assert len(memo.fresh("web", first)) == 1
    again = health_entries("web", [bad, good, entry("web-3", "10.0.0.3", [], {})], Rules()).rejections
    assert memo.fresh("web", again) == ()
    assert memo.fresh("web", ()) == ()
    assert len(memo.fresh("web", first)) == 1  # it went away and came back
