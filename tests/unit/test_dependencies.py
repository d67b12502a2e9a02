"""What pyproject.toml declares is what the code needs: every imported package is
declared, the installed versions meet the declared floors, and those floors carry the
APIs the code calls (py-consul 1.6/1.7 have no ``connections_timeout`` and crash on
start; requests before 2.32.3 has no ``build_connection_pool_key_attributes``).

The floors themselves were tried in a throwaway venv (py-consul 1.8.0, requests 2.32.3,
urllib3 2.0.7): tests/unit/test_consul_conventions.py, tests/security/
test_consul_conventions.py and test_tls_to_consul.py pass there; py-consul 1.7.1 fails
at ``ConsulClient(...)`` with the TypeError this test names.
"""

from __future__ import annotations

import ast
import inspect
import sys
from importlib.metadata import packages_distributions, version
from pathlib import Path

import consul
import consul.std
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from requests.adapters import HTTPAdapter

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]


def declared() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(line) for line in project["dependencies"]]
    return {canonicalize_name(r.name): r for r in requirements}


def imported_top_level_modules() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "syncer").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"syncer", "__future__"}


def test_every_imported_package_is_declared() -> None:
    distributions = packages_distributions()
    needed = {canonicalize_name(distributions[m][0]) for m in imported_top_level_modules() if m in distributions}
    missing = needed - set(declared())
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"
    assert "urllib3" in needed  # imported directly by the client: declared, not borrowed from requests


def test_installed_versions_meet_the_declared_floors() -> None:
    for name, requirement in declared().items():
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        installed = version(name)
        assert requirement.specifier.contains(installed, prereleases=True), f"{name} {installed} vs {requirement}"


def floor(name: str) -> Version:
    (low,) = [Version(s.version) for s in declared()[name].specifier if s.operator == ">="]
    return low


def test_the_floors_carry_the_apis_the_code_calls() -> None:
    assert floor("py-consul") >= Version("1.8")
    assert "connections_timeout" in inspect.signature(consul.Consul).parameters
    assert callable(getattr(consul.std.HTTPClient, "timeout", None))  # blocking-aware read timeouts
    assert floor("requests") >= Version("2.32.3")
    assert "build_connection_pool_key_attributes" in vars(HTTPAdapter)
    assert floor("urllib3") >= Version("2")
