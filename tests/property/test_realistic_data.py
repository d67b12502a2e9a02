"""Data shaped like a real cluster's, end to end: registered in the dev Consul, read by the
agent (a subprocess), served by a real nginx in reload mode.

Traefik and Fabio tags, URLs and JSON in Meta, non-ASCII descriptions, empty values and
64 Meta keys of 512 characters (tests/property/realistic.py) cost no instance. A user
template that prints a tag drops only the instance whose tag is nginx syntax, logs it
once (not on every answer), and serves the rest.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from syncer.devconsul.server import DevConsul
from syncer.resources import templates_dir
from syncer.testing.backends import BackendFarm
from syncer.testing.consul import ConsulWriter
from tests.conftest import StartAgent
from tests.property.realistic import REGISTRATIONS, TRAEFIK_RULE
from tests.stack import Stack, events, nudge, register, wait_event

REFUSED = "instance left out: the template printed a value that is nginx syntax"


@pytest.mark.parametrize("stack", ["reload"], indirect=True)
def test_real_world_tags_and_meta_are_served(
    stack: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm, start_agent: StartAgent
) -> None:
    names = ["b1", "b2", "b3", "b4"]
    for name, kind in zip(names, sorted(REGISTRATIONS), strict=True):
        tags, meta = REGISTRATIONS[kind]
        register(consul, backends, name, tags=tags, meta=meta)
    agent = start_agent(stack.agent_args(dev_consul.address))
    stack.wait_serving(backends, set(names), message="every instance served, whatever its tags and Meta")
    assert not events(agent, "instance rejected")


def tag_template(folder: Path) -> Path:
    """The packaged template, plus each server's first tag as a comment after its line."""
    text = (templates_dir() / "upstream.conf.j2").read_text()
    line_end = "{% if s.down %} down{% endif %};"
    assert line_end in text
    path = folder / "tagged.conf.j2"
    path.write_text(text.replace(line_end, line_end + "  # {{ s.tags | first if s.tags else 'untagged' }}"))
    return path


@pytest.mark.parametrize("stack", ["reload"], indirect=True)
def test_a_template_printing_a_tag_refuses_only_that_instance(
    stack: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm, start_agent: StartAgent
) -> None:
    register(consul, backends, "b1", tags=["canary"])
    register(consul, backends, "b2", tags=[TRAEFIK_RULE])
    register(consul, backends, "b3", tags=["v2"], meta=REGISTRATIONS["json"][1])
    template = tag_template(stack.root)
    agent = start_agent(stack.agent_args(dev_consul.address, "--template", str(template)))
    stack.wait_serving(backends, {"b1", "b3"}, message="b2's tag is refused, the rest served")
    (refused,) = wait_event(agent, REFUSED)
    assert (refused["service"], refused["instance"], refused["field"]) == ("web", "b2", "Service.Tags[0]")
    assert refused["value"] == TRAEFIK_RULE
    assert "nginx syntax" in refused["reason"]
    text = stack.upstream_conf.read_text()
    assert "# canary" in text
    assert "traefik" not in text

    # More answers and another change: the refusal is not news, so it is not logged again.
    nudge(consul)
    register(consul, backends, "b4", tags=["fresh"])
    stack.wait_serving(backends, {"b1", "b3", "b4"})
    assert len(events(agent, REFUSED)) == 1

    # Fixed at the source: b2 comes back.
    register(consul, backends, "b2", tags=["traefik-web"])
    stack.wait_serving(backends, {"b1", "b2", "b3", "b4"})


@pytest.mark.parametrize("stack", ["reload"], indirect=True)
def test_an_upstream_whose_every_instance_is_refused_answers_502(
    stack: Stack, dev_consul: DevConsul, consul: ConsulWriter, backends: BackendFarm, start_agent: StartAgent
) -> None:
    register(consul, backends, "b1", tags=["team payments"])
    register(consul, backends, "b2", tags=["urlprefix-/api strip=/api"])
    agent = start_agent(stack.agent_args(dev_consul.address, "--template", str(tag_template(stack.root))))
    stack.wait_serving(backends, {"502"}, message="the placeholder, never an empty upstream")
    (emptied,) = wait_event(agent, "every instance of the service was refused by the template; its upstream renders "
                            "the placeholder (nginx answers 502)")  # fmt: skip
    assert (emptied["service"], emptied["refused"]) == ("web", 2)
