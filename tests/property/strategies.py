"""Hypothesis strategies for untrusted input: Consul health entries and service names
(with nginx syntax, unicode, whitespace and huge values mixed into plausible ones), and
the shared settings that keep the property tests fast (< 20 s together on 2 cores)."""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Modest example counts (SYNCER_PROPERTY_EXAMPLES=1500 for a deep run), no deadline (nginx -t
# and HTTP round trips vary with load), no example database on disk (other engineers run
# the suite in the same checkout).
PROPERTY = settings(
    max_examples=int(os.environ.get("SYNCER_PROPERTY_EXAMPLES", "80")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

NGINX_SYNTAX = [";", "{", "}", "#", "$", "'", '"', "\\", "`", " ", "\t", "\n", "\r", "\x00"]
HOSTILE = [
    "x; include /etc/passwd",
    "a}b",
    "${host}",
    "# comment",
    "é",
    "\u202e",
    "\u3000",
    "",
    " ",
    "x" * 513,
    "1.2.3.4;",
    "1.2.3.4 ",
    "[::1]:80",
    "::1%eth0",
    "0.0.0.0",
    "::",
    "01.2.3.4",
    "256.1.1.1",
    "1.2.3",
]


def mostly(valid: st.SearchStrategy[Any], bad: st.SearchStrategy[Any], tenths: int = 9) -> st.SearchStrategy[Any]:
    """``valid`` in ``tenths`` of the draws, ``bad`` otherwise, so that an entry with a
    dozen fields is still often entirely valid (and some examples reach nginx -t)."""
    return st.integers(0, 9).flatmap(lambda n: valid if n < tenths else bad)


def hostile_text(max_size: int = 40) -> st.SearchStrategy[str]:
    """Text that tends to contain nginx syntax, unicode, whitespace, or is huge."""
    return st.one_of(
        st.sampled_from(HOSTILE),
        st.text(max_size=max_size),
        st.builds(lambda a, s, b: a + s + b, st.text(max_size=8), st.sampled_from(NGINX_SYNTAX), st.text(max_size=8)),
        st.text(min_size=500, max_size=700),
    )


SAFE_TOKEN = st.from_regex(r"[A-Za-z0-9_.:/=@+-]{1,20}", fullmatch=True)
JUNK: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), st.floats(allow_nan=False), st.lists(st.integers(), max_size=2), st.just({})
)

# Host names other than "localhost" are left out: nginx -t resolves every name, and a name
# that does not resolve fails the whole render by design (see test_nginx_refuses).
_HOSTNAME_LIKE = re.compile(r"[A-Za-z0-9.-]+\.?")


def _not_a_hostname(text: str) -> bool:
    return _HOSTNAME_LIKE.fullmatch(text) is None


ADDRESSES = mostly(
    st.one_of(
        st.ip_addresses(v=4).map(str),
        st.ip_addresses(v=6).map(str),
        st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
        st.ip_addresses(v=6).map(lambda a: a.exploded.upper()),
        st.just("localhost"),
    ),
    st.one_of(hostile_text().filter(_not_a_hostname), JUNK),
)
PORTS = mostly(st.integers(1, 65535), st.one_of(st.integers(-5, 70000), st.text(max_size=6), JUNK))


def _meta_values() -> st.SearchStrategy[Any]:
    return mostly(SAFE_TOKEN, st.one_of(hostile_text(), JUNK))


NGINX_META = st.fixed_dictionaries(
    {},
    optional={
        "nginx_max_fails": mostly(st.integers(0, 1000).map(str), st.one_of(st.integers(-2, 1100), _meta_values())),
        "nginx_fail_timeout": mostly(st.from_regex(r"[0-9]{1,5}(ms|s|m|h)?", fullmatch=True), _meta_values()),
        "nginx_max_conns": mostly(st.integers(0, 1_000_000).map(str), _meta_values()),
        "nginx_backup": mostly(st.sampled_from(["true", "false", "1", "0", "yes", "no"]), st.just("maybe")),
        "nginx_down": mostly(st.sampled_from(["false", "no", "true"]), st.just("off")),
    },
)
META = st.builds(
    lambda nginx, other: {**other, **nginx},
    NGINX_META,
    st.dictionaries(mostly(SAFE_TOKEN, hostile_text(12)), _meta_values(), max_size=3),
)
TAGS = mostly(st.lists(mostly(SAFE_TOKEN, st.one_of(hostile_text(), JUNK), 8), max_size=3), JUNK)
WEIGHTS = mostly(
    st.one_of(
        st.none(),
        st.fixed_dictionaries({"Passing": st.integers(1, 65535), "Warning": st.integers(0, 5)}),
    ),
    st.one_of(st.fixed_dictionaries({"Passing": st.one_of(st.integers(-1, 70000), JUNK)}), JUNK),
)
STATUSES = st.sampled_from(["passing"] * 12 + ["warning", "critical", "maintenance", "bogus"])


@st.composite
def health_entry(draw: st.DrawFn, service: str) -> Any:
    """One element of a /v1/health/service/<service> answer, mostly plausible, never trusted."""
    if draw(st.integers(0, 30)) == 0:
        return draw(st.one_of(JUNK, st.text(max_size=5)))  # not even an object
    svc: dict[str, Any] = {
        "ID": draw(mostly(SAFE_TOKEN, st.one_of(hostile_text(), st.none()))),
        "Service": service if draw(st.integers(0, 20)) else draw(hostile_text(10)),
        "Address": draw(mostly(ADDRESSES, st.just(""))),
        "Port": draw(PORTS),
        "Tags": draw(TAGS),
        "Meta": draw(mostly(META, JUNK)),
    }
    weights = draw(WEIGHTS)
    if weights is not None:
        svc["Weights"] = weights
    node = {"Node": "n1", "Address": draw(ADDRESSES)}
    checks = [{"CheckID": "serfHealth", "Status": draw(STATUSES)}, {"CheckID": "svc", "Status": draw(STATUSES)}]
    return {"Node": node, "Service": svc, "Checks": draw(mostly(st.just(checks), JUNK))}


VALID_NAME = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True)
SERVICE_NAMES = mostly(st.one_of(VALID_NAME, st.sampled_from(["web", "Web", "WEB", "api"])), hostile_text())


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
