"""Property: any JSON at all where a Consul answer belongs is either refused whole
(``AnswerInvalid``: not the shape Consul sends) or read entry by entry — every entry a
server, a rejection with a reason, or a skipped warning — and never crashes the reader."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from syncer.discovery.normalize import AnswerInvalid, Rules, catalog_service_names, health_entries
from tests.property.strategies import PROPERTY, health_entry, hostile_text

JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), hostile_text(20)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(hostile_text(10), inner, max_size=4)),
    max_leaves=20,
)


@PROPERTY
@given(body=st.one_of(JSON, st.lists(st.one_of(health_entry("web"), JSON), max_size=8)), warning=st.booleans())
def test_health_answers_are_refused_whole_or_accounted_for_entry_by_entry(body: Any, warning: bool) -> None:
    try:
        result = health_entries("web", body, Rules(include_warning=warning, allow_hostnames=warning))
    except AnswerInvalid:
        assert not isinstance(body, list)
        return
    assert len(result.servers) + len(result.rejections) + result.skipped_warning == len(body)
    assert all(r.reason and r.field and len(r.instance) <= 80 for r in result.rejections)


@PROPERTY
@given(body=st.one_of(JSON, st.dictionaries(hostile_text(20), st.one_of(st.lists(hostile_text(8)), JSON))))
def test_catalog_answers_are_refused_whole_or_filtered_by_name(body: Any) -> None:
    try:
        names, rejections = catalog_service_names(body, ["lb"])
    except AnswerInvalid:
        assert not isinstance(body, dict)
        return
    assert names <= set(body)
    assert all(r.reason for r in rejections)
