"""Package metadata an installer relies on: the LICENSE file is the declared license's
text, classifiers agree with it, and no calendar-versioned dependency carries an upper
bound (next year's release would be refused)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

# Dependencies whose versions are years (structlog 24.1, 25.4, ...).
CALENDAR_VERSIONED = {"structlog"}


def test_license_file_is_the_declared_license() -> None:
    assert PROJECT["license"] == {"text": "Apache-2.0"}
    text = (ROOT / "LICENSE").read_text()
    assert re.search(r"Apache License\s+Version 2\.0, January 2004", text)
    assert "END OF TERMS AND CONDITIONS" in text  # the full text, not a pointer to it
    assert "License :: OSI Approved :: Apache Software License" in PROJECT["classifiers"]


def test_classifiers_name_the_supported_pythons() -> None:
    floor = re.fullmatch(r">=3\.(\d+)", PROJECT["requires-python"])
    assert floor is not None
    listed = {int(c.rsplit(".", 1)[1]) for c in PROJECT["classifiers"] if re.fullmatch(r".*Python :: 3\.\d+", c)}
    assert listed
    assert min(listed) == int(floor.group(1))


def test_no_upper_bound_on_calendar_versioned_dependencies() -> None:
    for requirement in PROJECT["dependencies"]:
        name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower()
        if name in CALENDAR_VERSIONED:
            assert "<" not in requirement.split(";")[0], requirement
