"""The Store as a pure reducer: events and time in, state and commands out. No threads, no I/O."""

from __future__ import annotations

import pytest

from syncer.discovery.events import (
    CatalogChanged,
    ConfirmRead,
    ConsulStateReset,
    ServiceChanged,
    ServiceReadFailed,
    WatchFailed,
    WatchRecovered,
)
from syncer.discovery.normalize import Rejection
from syncer.model import Server
from syncer.planning import store as st
from syncer.planning.guard import DropGuard


def servers(*ports: int) -> tuple[Server, ...]:
    return tuple(Server("10.0.0.1", p, instance_id=f"i{p}") for p in ports)


def changed(name: str, *ports: int, rejections: tuple[Rejection, ...] = ()) -> ServiceChanged:
    return ServiceChanged(name, servers(*ports), rejections, 0, 1, 0.0)


def make(names: tuple[str, ...] = ("web",), tags: tuple[str, ...] = (), **kw: float) -> st.Store:
    store = st.Store(
        guard=DropGuard(0.5, 3.0), configured=frozenset(names), tags=tags, state_loss_grace=30.0, initial_wait=10.0
    )
    store.start(kw.get("now", 0.0))
    return store


def test_start_watches_the_configured_services() -> None:
    store = st.Store(guard=DropGuard(), configured=frozenset({"web", "api"}))
    assert store.start(0.0) == [st.SetServices(frozenset({"web", "api"}))]
    assert not store.ready(0.0)


@pytest.mark.parametrize(
    ("events", "now", "ready"),
    [
        pytest.param([], 0.0, False, id="nothing answered"),
        pytest.param([changed("web", 1)], 0.0, False, id="one of two answered"),
        pytest.param([changed("web", 1), changed("api", 2)], 0.0, True, id="both answered"),
        pytest.param(
            [changed("web", 1), ServiceReadFailed("api", "500", 500, 0.0)], 0.0, True, id="the other cannot be read"
        ),
        pytest.param([ServiceReadFailed("api", "500", 500, 0.0)], 0.0, False, id="nothing readable: nothing to write"),
        pytest.param([ServiceReadFailed("web", "x", None, 0.0)], 11.0, False, id="initial wait over, nothing read"),
        pytest.param([changed("web", 1)], 11.0, True, id="initial wait over, one read"),
    ],
)
def test_readiness(events: list[ServiceChanged | ServiceReadFailed], now: float, ready: bool) -> None:
    """A service that cannot be read does not hold back the others; no answer at all holds everything."""
    store = make(("web", "api"))
    for event in events:
        store.handle(event, 0.0)
    assert store.ready(now) is ready


def test_a_change_is_accepted_and_counted_once() -> None:
    store = make()
    store.handle(changed("web", 1, 2), 1.0)
    assert store.snapshot() == {"web": servers(1, 2)}
    assert store.changed_at == {"web": 1.0}
    revision = store.revision
    store.handle(changed("web", 1, 2), 2.0)  # same content: nothing to do
    assert store.revision == revision
    assert store.applied() == {"web": 1.0}
    assert store.changed_at == {}


def test_rejections_are_reported_once_per_change() -> None:
    store = make()
    bad = (Rejection("web", "i9", "address", "x;y", "not an IP"),)
    assert st.Rejected("web", bad) in store.handle(changed("web", 1, rejections=bad), 0.0)
    assert store.handle(changed("web", 1, 2, rejections=bad), 1.0) == []
    assert store.handle(changed("web", 1, 2), 2.0) == []  # gone: nothing to say
    assert st.Rejected("web", bad) in store.handle(changed("web", 1, 2, rejections=bad), 3.0)


def test_a_sharp_drop_is_held_then_confirmed() -> None:
    store = make()
    store.handle(changed("web", 1, 2, 3, 4), 0.0)
    store.applied()
    commands = store.handle(changed("web", 1), 1.0)
    assert commands == [st.DropHeld("web", 4, 1, "sharp drop")]
    assert store.snapshot()["web"] == servers(1, 2, 3, 4)
    assert store.tick(2.0) == []
    assert store.tick(4.0) == [st.Confirm("web")]
    assert store.tick(4.5) == []  # one confirming read at a time
    commands = store.handle(ConfirmRead("web", servers(1), "", 4.6), 4.6)
    assert commands == [st.DropDecided("web", 4, 1, "confirmed")]
    assert store.snapshot()["web"] == servers(1)


def test_a_held_drop_that_recovers_applies_the_new_read() -> None:
    store = make()
    store.handle(changed("web", 1, 2, 3, 4), 0.0)
    store.handle(changed("web", 1), 1.0)
    store.tick(4.0)
    commands = store.handle(ConfirmRead("web", servers(1, 2, 3), "", 4.1), 4.1)
    assert commands == [st.DropDecided("web", 4, 3, "recovered")]
    assert store.snapshot()["web"] == servers(1, 2, 3)


def test_a_failed_confirming_read_keeps_the_drop_held() -> None:
    store = make()
    store.handle(changed("web", 1, 2), 0.0)
    store.handle(changed("web"), 1.0)
    assert store.tick(4.0) == [st.Confirm("web")]
    commands = store.handle(ConfirmRead("web", None, "timed out", 4.1), 4.1)
    assert commands == [st.DropDecided("web", 2, 0, "confirm failed", "timed out")]
    assert store.snapshot()["web"] == servers(1, 2)
    assert store.tick(7.2) == [st.Confirm("web")]


def test_after_consul_lost_its_state_drops_wait_for_the_grace_or_the_instances() -> None:
    """An index that went backwards: Consul is being refilled; hold what is missing."""
    store = make(("web", "api"))
    store.handle(changed("web", 1, 2, 3), 0.0)
    store.handle(changed("api", 7), 0.0)
    store.applied()
    reset = store.handle(ConsulStateReset("health:state", 900, 3, 10.0), 10.0)
    assert reset == [st.StateReset("health:state", 900, 3, 40.0)]
    assert store.handle(changed("web"), 11.0) == [st.DropHeld("web", 3, 0, "consul state reset")]
    assert store.tick(15.0) == []  # no confirming read while holding: the grace decides
    assert store.snapshot()["web"] == servers(1, 2, 3)
    # re-registered before the grace ends: applied as an ordinary answer
    assert store.handle(changed("web", 1, 2, 3), 18.0) == [st.DropDecided("web", 3, 3, "refilled")]
    assert store.changed_at == {}
    # api never comes back: after the grace, syncer follows Consul
    store.handle(changed("api"), 19.0)
    assert store.snapshot()["api"] == servers(7)
    assert store.tick(40.0) == [st.DropDecided("api", 1, 0, "grace over")]
    assert store.snapshot()["api"] == ()


def test_a_service_that_really_goes_to_zero_in_a_healthy_consul_still_empties() -> None:
    store = make()
    store.handle(changed("web", 1), 0.0)
    store.handle(changed("web"), 1.0)
    store.tick(4.0)
    store.handle(ConfirmRead("web", (), "", 4.0), 4.0)
    assert store.snapshot()["web"] == ()


def test_tags_select_services_and_leaving_ones_keep_an_empty_upstream() -> None:
    store = make((), tags=("edge",))
    assert not store.ready(0.0)  # the catalog has not answered
    commands = store.handle(CatalogChanged(frozenset({"web", "api"}), (), 0.0), 0.0)
    assert commands == [st.SetServices(frozenset({"web", "api"}))]
    store.handle(changed("web", 1), 0.0)
    store.handle(changed("api", 2), 0.0)
    assert store.ready(0.0)
    commands = store.handle(CatalogChanged(frozenset({"web"}), (), 1.0), 1.0)
    assert commands == [st.SetServices(frozenset({"web"})), st.ServiceLeft("api")]
    assert store.snapshot()["api"] == ()
    assert store.handle(changed("api", 3), 2.0) == []  # a dropped watch's last answer is ignored
    assert store.snapshot()["api"] == ()


def test_a_sighup_that_drops_a_service_empties_it_and_stops_its_watch() -> None:
    """The old agent emptied `selected` first and so never noticed the service had left."""
    store = make(("web", "api"))
    store.handle(changed("web", 1), 0.0)
    store.handle(changed("api", 2), 0.0)
    commands = store.reconfigure(("web",), (), 5.0)
    assert commands == [st.SetServices(frozenset({"web"})), st.ServiceLeft("api")]
    assert store.snapshot()["api"] == ()
    assert "api" in store.changed_at


def test_new_tags_keep_the_old_selection_until_the_catalog_answers() -> None:
    store = make((), tags=("a",))
    store.handle(CatalogChanged(frozenset({"web"}), (), 0.0), 0.0)
    store.handle(changed("web", 1), 0.0)
    commands = store.reconfigure((), ("b",), 1.0)
    assert commands == [st.SetServices(frozenset({"web"}))]  # no flap to 502
    assert not store.ready(1.0)
    commands = store.handle(CatalogChanged(frozenset({"api"}), (), 2.0), 2.0)
    assert commands == [st.SetServices(frozenset({"api"})), st.ServiceLeft("web")]


def test_routing_can_add_services_to_watch() -> None:
    store = make(("web",))
    assert store.set_extra({"web-v2"}, 0.0) == [st.SetServices(frozenset({"web", "web-v2"}))]


def test_failing_watches_are_forgotten_when_their_service_leaves() -> None:
    """/healthz stayed 503 forever when a watch was stopped while failing."""
    store = make(("web", "api"))
    store.handle(ServiceReadFailed("api", "500 from Consul", 500, 3.0), 3.0)
    store.handle(WatchFailed("catalog:services", "refused", None, 1, 4.0), 4.0)
    assert store.consul_failing_since() == 3.0
    store.reconfigure(("web",), (), 5.0)
    assert store.consul_failing_since() == 4.0
    store.handle(WatchRecovered("catalog:services", 6.0), 6.0)
    assert store.consul_failing_since() is None


def test_a_good_read_clears_the_service_failure() -> None:
    store = make()
    store.handle(ServiceReadFailed("web", "500", 500, 1.0), 1.0)
    store.handle(changed("web", 1), 2.0)
    assert store.consul_failing_since() is None


def test_next_deadline_covers_confirmations_grace_and_the_initial_wait() -> None:
    store = make(("web", "api"))
    assert store.next_deadline() == 10.0  # api has not answered: the initial wait
    store.handle(changed("web", 1, 2), 0.0)
    store.handle(changed("api", 1), 0.0)
    assert store.next_deadline() is None
    store.handle(changed("web"), 1.0)
    assert store.next_deadline() == 4.0
    store.handle(ConsulStateReset("catalog:services", 9, 1, 2.0), 2.0)
    assert store.next_deadline() == 4.0
