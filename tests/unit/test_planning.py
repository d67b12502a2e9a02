"""Pure planning: desired state, diff, quiescence."""

from __future__ import annotations

from syncer.model import Server, make_upstream
from syncer.planning.desired import desired_state
from syncer.planning.diff import diff
from syncer.planning.quiescence import Quiescence


def test_desired_state_sorts_and_deduplicates_endpoints() -> None:
    a = Server("10.0.0.2", 80, instance_id="b")
    b = Server("10.0.0.1", 80, instance_id="z")
    dup = Server("10.0.0.2", 80, weight=9, instance_id="a")  # same endpoint, other ID
    desired = desired_state({"web": (a, b, dup)})
    servers = desired.upstreams["web"].servers
    assert [s.endpoint for s in servers] == ["10.0.0.1:80", "10.0.0.2:80"]
    assert servers[1].weight == 9  # the lowest instance ID wins, whatever Consul's order


def test_order_of_consul_answer_does_not_matter() -> None:
    servers = [Server(f"10.0.0.{i}", 80, instance_id=str(i)) for i in range(5)]
    assert make_upstream("w", servers) == make_upstream("w", list(reversed(servers)))


def test_diff_reports_added_removed_changed_created_deleted() -> None:
    before = {
        "web": make_upstream("web", [Server("10.0.0.1", 80), Server("10.0.0.2", 80)]),
        "old": make_upstream("old", [Server("10.0.0.9", 80)]),
    }
    after = {
        "web": make_upstream("web", [Server("10.0.0.2", 80, weight=3), Server("10.0.0.3", 80)]),
        "new": make_upstream("new", []),
    }
    changes = {c.name: c for c in diff(before, after)}
    web = changes["web"]
    assert [s.endpoint for s in web.added] == ["10.0.0.3:80"]
    assert [s.endpoint for s in web.removed] == ["10.0.0.1:80"]
    assert [(b.weight, a.weight) for b, a in web.changed] == [(1, 3)]
    assert changes["new"].created
    assert changes["old"].deleted
    assert diff(after, after) == []


def test_tags_and_ids_do_not_count_as_nginx_changes() -> None:
    before = {"web": make_upstream("web", [Server("10.0.0.1", 80, instance_id="a", tags=("x",))])}
    after = {"web": make_upstream("web", [Server("10.0.0.1", 80, instance_id="b", tags=("y",))])}
    assert diff(before, after) == []


def test_quiescence_fires_min_after_the_last_change() -> None:
    q = Quiescence(1.0, 5.0)
    assert not q.due(0.0)
    q.changed(0.0)
    q.changed(0.8)
    assert not q.due(1.5)
    assert q.due(1.8)
    assert q.deadline() == 1.8


def test_quiescence_never_later_than_max_after_the_first() -> None:
    q = Quiescence(1.0, 3.0)
    for t in (0.0, 0.9, 1.8, 2.7):
        q.changed(t)
    assert q.deadline() == 3.0
    assert q.due(3.0)
    q.reset()
    assert not q.pending
    assert q.deadline() is None


def test_zero_quiescence_is_immediate() -> None:
    q = Quiescence(0.0, 0.0)
    q.changed(5.0)
    assert q.due(5.0)
