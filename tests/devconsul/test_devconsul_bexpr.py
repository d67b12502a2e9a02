"""The go-bexpr subset: grammar, semantics and Consul's error wording."""

from __future__ import annotations

import pytest

from syncer.devconsul.bexpr import Field, Filter, FilterError
from syncer.devconsul.filter_schemas import CHECK_SERVICE_NODE

ENTRY = {
    "Node": {"Node": "n1", "Address": "10.0.0.9", "Meta": {"rack": "r1"}, "TaggedAddresses": {}},
    "Service": {
        "ID": "web1",
        "Service": "web",
        "Tags": ["v1", "blue"],
        "Address": "",
        "Port": 8080,
        "Meta": {"env": "qa"},
        "EnableTagOverride": False,
        "Weights": {"Passing": 1, "Warning": 1},
    },
    "Checks": [
        {"CheckID": "serfHealth", "Status": "passing", "ServiceTags": []},
        {"CheckID": "service:web1", "Status": "warning", "ServiceTags": ["v1"]},
    ],
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('Service.Service == "web"', True),
        ("Service.Service == web", True),
        ('Service.Service != "web"', False),
        ('"v1" in Service.Tags', True),
        ('"v9" not in Service.Tags', True),
        ('Service.Tags contains "blue"', True),
        ('Service.Tags not contains "blue"', False),
        ("Service.Tags is not empty", True),
        ('Service.Address == ""', True),
        ('Service.Meta.env == "qa"', True),
        ('Service.Meta["env"] == "qa"', True),
        ('Service.Meta.missing == ""', True),
        ('"env" in Service.Meta', True),
        ("Service.Port == 8080", True),
        ("Service.EnableTagOverride == false", True),
        ('Service.ID matches "^web[0-9]+$"', True),
        ('Service.ID not matches "^api"', True),
        ('"eb" in Service.ID', True),
        ('Node.Node == "n1" and Node.Meta.rack == r1', True),
        ('Checks.Status == "warning"', True),  # any element
        ('Checks.Status != "passing"', False),  # not (any element passing)
        ('Service.Port == 1 or (Service.Service == "web" and not Service.Port == 2)', True),
        ("not not Service.Port == 8080", True),
        ("Service.Weights.Passing == 1", True),
    ],
)
def test_expressions(expression: str, expected: bool) -> None:
    assert Filter(expression, CHECK_SERVICE_NODE).matches(ENTRY) is expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("foo", '1:4 (3): no match found, expected: "!=", ".", "==", "[", [ \\t\\r\\n] or [a-zA-Z0-9_/]'),
        ("Node.Address == 10.10.10.10 ", '1:22 (21): rule "number": Invalid number literal'),
        ('Service.Service == "web', '1:24 (23): rule "string": Unterminated string literal'),
        ("Service.Foo == 1", 'Selector ["Service" "Foo"] is not valid'),
        ('Service.Port matches "8"', 'Invalid match operator "Matches" for selector "Service.Port"'),
        (
            "Service.Port == abc",
            'Failed to coerce value "abc" for selector "Service.Port": strconv.ParseInt: parsing "abc": invalid syntax',
        ),
        ('Service.ID matches "("', 'Failed to compile regular expression "("'),
    ],
)
def test_errors_are_worded_like_consul(expression: str, message: str) -> None:
    with pytest.raises(FilterError) as caught:
        Filter(expression, CHECK_SERVICE_NODE)
    assert str(caught.value).startswith("Failed to create boolean expression evaluator: " + message)


def test_empty_expression_matches_everything() -> None:
    flt = Filter("", Field("struct", {}))
    assert flt.apply([1, 2]) == [1, 2]
