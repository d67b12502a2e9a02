"""The sharp-drop guard and the /healthz verdict: pure bookkeeping over explicit time."""

from __future__ import annotations

import pytest

from syncer.config import ConfigError, load
from syncer.health import HealthState
from syncer.model import Server
from syncer.observe import ListenRefused, check_listen
from syncer.planning.guard import DropGuard


def servers(n: int) -> tuple[Server, ...]:
    return tuple(Server(f"10.0.0.{i}", 80) for i in range(1, n + 1))


def test_first_answer_and_small_drops_pass() -> None:
    guard = DropGuard(max_drop_share=0.5, confirm_after=3)
    assert guard.offer("web", None, (), now=0)  # nothing to lose yet
    assert guard.offer("web", servers(4), servers(2), now=0)  # exactly half: not more than the share
    assert guard.offer("web", servers(2), servers(5), now=0)  # growth


def test_losing_everything_or_more_than_the_share_is_held() -> None:
    guard = DropGuard(max_drop_share=0.5, confirm_after=3)
    assert not guard.offer("web", servers(4), (), now=10)
    assert not guard.offer("api", servers(4), servers(1), now=10)
    assert guard.next_deadline() == 13
    assert guard.due(12.9) == []
    assert {h.service for h in guard.due(13)} == {"web", "api"}


def test_a_recovery_before_confirmation_clears_the_hold() -> None:
    guard = DropGuard(confirm_after=3)
    assert not guard.offer("web", servers(3), (), now=0)
    assert guard.offer("web", servers(3), servers(3), now=1)
    assert guard.held == {}


def test_repeated_drops_keep_the_original_deadline() -> None:
    guard = DropGuard(confirm_after=3)
    guard.offer("web", servers(3), (), now=0)
    guard.offer("web", servers(3), servers(1)[:0], now=2)
    assert guard.held["web"].confirm_at == 3
    guard.retry_later("web", now=3)
    assert guard.held["web"].confirm_at == 6


def test_zero_delay_turns_the_guard_off() -> None:
    assert DropGuard(confirm_after=0).offer("web", servers(3), (), now=0)


def test_health_starts_not_ready_then_tracks_grace_periods() -> None:
    health = HealthState(consul_grace=10, nginx_grace=5)
    assert health.verdict(0).status == "starting"
    health.applied()
    assert health.verdict(1).ok
    health.consul_failed(2, "refused")
    assert health.verdict(11).ok  # within the grace
    verdict = health.verdict(13)
    assert not verdict.ok
    assert verdict.status == "consul unreachable"
    assert verdict.detail["consul_error"] == "refused"
    health.consul_ok()
    health.apply_failed(20, "nginx -t refused")
    assert not health.verdict(26).ok
    health.applied()
    assert health.verdict(27).ok


@pytest.mark.parametrize("listen", ["127.0.0.1:9105", "[::1]:9105", "localhost:1", "unix:/run/syncer.sock"])
def test_loopback_listeners_are_allowed(listen: str) -> None:
    check_listen(listen, allow_remote=False)


@pytest.mark.parametrize("listen", ["0.0.0.0:9105", "10.1.2.3:9105", "[::]:9105", "example.com:80"])
def test_remote_listeners_need_an_explicit_yes(listen: str) -> None:
    with pytest.raises(ListenRefused):
        check_listen(listen, allow_remote=False)
    check_listen(listen, allow_remote=True)


def test_config_refuses_a_remote_metrics_listener() -> None:
    with pytest.raises(ConfigError, match=r"observe\.listen"):
        load(None, env={}, overrides={"observe": {"listen": "0.0.0.0:9105"}})
