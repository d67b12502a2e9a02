"""Consul's blocking-query rules (shared/notes/consul.md), as pure functions."""

from __future__ import annotations

import random

import pytest

from syncer.discovery.blocking import (
    TokenBucket,
    format_wait,
    jittered_wait,
    next_index,
    query_index,
    read_timeout,
)
from syncer.discovery.client import Answer
from syncer.discovery.watch import SuspectAnswer, check_trust


@pytest.mark.parametrize(
    ("sent", "returned", "expected"),
    [
        (0, 10, 10),  # first read
        (10, 10, 10),  # wait expired, nothing new
        (10, 12, 12),  # moved forward
        (10, 3, 0),  # went backwards: reset, read afresh
        (10, 0, 1),  # zero (a Consul bug) clamps to 1, which also re-reads at once
        (0, 0, 1),  # a zero index is clamped so the next call still blocks
        (0, -5, 1),
        (5, None, 0),  # no header at all: start over
    ],
)
def test_next_index(sent: int, returned: int | None, expected: int) -> None:
    assert next_index(sent, returned) == expected


def test_an_index_below_one_is_never_sent_blocking() -> None:
    assert query_index(0) is None
    assert query_index(-1) is None
    assert query_index(1) == 1


def test_jittered_wait_stays_within_an_eighth_below() -> None:
    rng = random.Random(7)
    waits = [jittered_wait(300.0, rng) for _ in range(1000)]
    assert all(300.0 - 300.0 / 8 <= w <= 300.0 for w in waits)
    assert len({round(w, 3) for w in waits}) > 900  # really spread out


def test_read_timeout_exceeds_wait_plus_consul_jitter() -> None:
    for wait in (1.0, 60.0, 300.0, 600.0):
        assert read_timeout(wait) > wait + wait / 16


def test_format_wait_is_a_go_duration() -> None:
    assert format_wait(300.0) == "300000ms"
    assert format_wait(0.0001) == "1ms"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_a_burst_of_two_then_paces() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2.0, burst=2, clock=clock)
    assert bucket.take() == 0.0
    assert bucket.take() == 0.0
    assert bucket.take() == pytest.approx(0.5)  # one token per 0.5 s
    clock.now = 0.5
    assert bucket.take() == pytest.approx(0.5)  # the debt carries over
    clock.now = 10.0
    assert bucket.take() == 0.0  # refilled, but never above the burst
    assert bucket.take() == 0.0
    assert bucket.take() > 0.0


def test_an_empty_answer_filtered_by_acls_is_not_believed() -> None:
    """A token that may not see a service's instances gets an empty 200 with
    X-Consul-Results-Filtered-By-ACLs: that is no proof the service has none."""
    check_trust(Answer(5, [], True, 0, filtered_by_acls=False), 10)
    check_trust(Answer(5, [{"x": 1}], True, 0, filtered_by_acls=True), 10)  # partial: still usable
    with pytest.raises(SuspectAnswer, match="ACLs"):
        check_trust(Answer(5, [], True, 0, filtered_by_acls=True), 10)
