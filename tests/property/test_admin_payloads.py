"""Property, against the real Lua endpoint in a real nginx: every bad admin-API payload is
answered 400 with a reason and leaves the upstream exactly as it was; every valid one is
stored as sent (defaults filled in).

Bad payloads are made bad by construction: a valid body with one thing broken (a field
of the wrong type or out of range, an unknown field, an address that is not an IP
literal or carries nginx syntax, a duplicate, an empty list without ``allow_empty``),
or bytes that are not a JSON object at all (cut short, trailing junk, too deep)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncer import limits
from tests.property.strategies import PROPERTY, hostile_text, is_ip
from tests.stack import NEEDS_LUA, Stack, make_stack

pytestmark = NEEDS_LUA
NAME = "prop"
# Every bound comes from the contract both the Lua endpoint and syncer read.
LIMITS = limits.load()


def _int_range(r: limits.Range) -> tuple[int, int]:
    return int(r.low), int(r.high)


PORT, WEIGHT, MAX_FAILS, MAX_CONNS, FAIL_TIMEOUT = (
    _int_range(LIMITS.port),
    _int_range(LIMITS.weight),
    _int_range(LIMITS.max_fails),
    _int_range(LIMITS.max_conns),
    _int_range(LIMITS.fail_timeout),
)
SEED = [{"address": "127.0.0.1", "port": 9}]


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = make_stack("api", Path(tmp_path_factory.mktemp("admin-prop")), worker_processes=2).start()
    assert stack.admin("PUT", f"/upstreams/{NAME}", json={"servers": SEED}).status_code == 200
    yield stack
    stack.stop()


SERVER = st.fixed_dictionaries(
    {
        # every IP but the unspecified ones (0.0.0.0, ::), which nothing can connect to
        "address": st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))
        .filter(lambda a: not a.is_unspecified)
        .map(str),
        "port": st.integers(*PORT),
    },
    optional={
        "weight": st.integers(*WEIGHT),
        "max_fails": st.integers(*MAX_FAILS),
        # milliseconds: the endpoint's JSON encoder keeps 14 significant digits
        "fail_timeout": st.one_of(
            st.integers(*FAIL_TIMEOUT), st.integers(FAIL_TIMEOUT[0], FAIL_TIMEOUT[1] * 1000).map(lambda ms: ms / 1000)
        ),
        "max_conns": st.integers(*MAX_CONNS),
        "backup": st.booleans(),
        "down": st.booleans(),
    },
)
VALID = st.lists(SERVER, min_size=1, max_size=6, unique_by=lambda s: (s["address"], s["port"])).map(
    lambda servers: {"servers": servers}
)

_NOT_INT = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != int(f)), st.text(max_size=4)
)
_NON_BOOL: st.SearchStrategy[Any] = st.one_of(st.none(), st.integers(), st.text(max_size=5), st.just([]))
BROKEN_FIELD: dict[str, st.SearchStrategy[Any]] = {
    "address": st.one_of(
        hostile_text().filter(lambda s: not is_ip(s)),
        st.sampled_from(["localhost", "example.com", "[::1]", "1.2.3.4:80", "::1%lo", "010.0.0.1", "0.0.0.0", "::"]),
        st.integers(),
        st.none(),
    ),
    "port": st.one_of(
        st.integers(max_value=PORT[0] - 1), st.integers(min_value=PORT[1] + 1), _NOT_INT, st.booleans(), st.none()
    ),
    "weight": st.one_of(
        st.integers(max_value=WEIGHT[0] - 1), st.integers(min_value=WEIGHT[1] + 1), _NOT_INT, st.booleans(), st.none()
    ),
    "max_fails": st.one_of(
        st.integers(max_value=MAX_FAILS[0] - 1), st.integers(min_value=MAX_FAILS[1] + 1), _NOT_INT, st.none()
    ),
    "fail_timeout": st.one_of(
        st.floats(max_value=FAIL_TIMEOUT[0] - 0.001),
        st.floats(min_value=FAIL_TIMEOUT[1] + 0.5),
        st.text(max_size=4),
        st.none(),
    ),
    "max_conns": st.one_of(
        st.integers(max_value=MAX_CONNS[0] - 1), st.integers(min_value=MAX_CONNS[1] + 1), _NOT_INT, st.none()
    ),
    "backup": _NON_BOOL,
    "down": _NON_BOOL,
}


@st.composite
def bad_bodies(draw: st.DrawFn) -> bytes:
    """A body the endpoint must refuse, as the bytes sent."""
    body: dict[str, Any] = draw(VALID)
    servers = body["servers"]
    how = draw(
        st.sampled_from(
            [
                "field", "missing", "unknown-field", "unknown-top", "not-object", "servers-type", "duplicate",
                "empty", "too-many", "allow-empty-type", "hash-on", "raw",
            ]
        )
    )  # fmt: skip
    i = draw(st.integers(0, len(servers) - 1))
    if how == "field":
        key = draw(st.sampled_from(sorted(BROKEN_FIELD)))
        servers[i][key] = draw(BROKEN_FIELD[key])
    elif how == "missing":
        del servers[i][draw(st.sampled_from(["address", "port"]))]
    elif how == "unknown-field":
        servers[i][draw(st.sampled_from(["Address", "addr", "priority", "", "weight "]))] = 1
    elif how == "unknown-top":
        body[draw(st.sampled_from(["version", "Servers", "upstream", "allowEmpty"]))] = True
    elif how == "not-object":
        servers[i] = draw(st.one_of(st.integers(), st.text(max_size=5), st.just([1])))
    elif how == "servers-type":
        body["servers"] = draw(st.one_of(st.text(max_size=5), st.integers(), st.just({"a": 1}), st.none()))
    elif how == "duplicate":
        servers.append(dict(servers[i]))
    elif how == "empty":
        body["servers"] = []
    elif how == "too-many":
        body["servers"] = [{"address": "10.0.0.1", "port": 1 + n} for n in range(LIMITS.max_servers + 1)]
    elif how == "allow-empty-type":
        body["allow_empty"] = draw(st.one_of(st.sampled_from(["true", 1, 0]), st.none()))
    elif how == "hash-on":
        body["hash_on"] = draw(
            st.one_of(st.sampled_from(["$host", "Host", "a b", "x;y", "a" * (LIMITS.hash_on_max + 1)]), st.integers())
        )
    else:
        text = json.dumps(body)
        return draw(
            st.one_of(
                st.integers(1, len(text) - 1).map(lambda n: text[:n].encode()),  # cut short
                st.just((text + draw(st.sampled_from(["}", "x", ",", "[]"]))).encode()),  # trailing junk
                st.sampled_from([b"", b"null", b"[]", b'"servers"', b"42", b"\xff\xfe", b"{" * 64 + b"}" * 64]),
                st.binary(max_size=40).filter(lambda b: not _is_object(b)),
            )
        )
    return json.dumps(body).encode()


def _is_object(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except ValueError:
        return False


@PROPERTY
@given(raw=bad_bodies())
def test_every_bad_payload_is_400_and_changes_nothing(endpoint: Stack, raw: bytes) -> None:
    before = endpoint.admin("GET", f"/upstreams/{NAME}").json()
    response = endpoint.admin("PUT", f"/upstreams/{NAME}", data=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, (raw, response.status_code, response.text)
    assert response.json()["error"]
    assert endpoint.admin("GET", f"/upstreams/{NAME}").json() == before


@PROPERTY
@given(body=VALID)
def test_every_valid_payload_is_stored_as_sent(endpoint: Stack, body: dict[str, Any]) -> None:
    response = endpoint.admin("PUT", f"/upstreams/{NAME}", json=body)
    assert response.status_code == 200, (body, response.text)
    stored = endpoint.admin("GET", f"/upstreams/{NAME}").json()["servers"]
    assert [(s["address"], s["port"]) for s in stored] == [(s["address"], s["port"]) for s in body["servers"]]
    for sent, kept in zip(body["servers"], stored, strict=True):
        assert {k: kept[k] for k in sent} == sent


@PROPERTY
@given(body=VALID)
def test_syncer_and_the_endpoint_agree_on_every_valid_server(body: dict[str, Any]) -> None:
    """A server the endpoint accepts passes syncer's own checks of the same fields (both
    read the contract): nothing syncer sends is refused for a limit only one side knows."""
    from syncer import validate  # noqa: PLC0415

    for server in body["servers"]:
        assert validate.port(server["port"]) == server["port"]
        assert validate.weight(server.get("weight", 1)) == server.get("weight", 1)
        assert server.get("max_fails", 0) in LIMITS.max_fails
        assert server.get("max_conns", 0) in LIMITS.max_conns
    assert LIMITS.valid_name(NAME)
