"""Fixtures: real nginx processes (backends and the api-mode nginx under test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from syncer.testing.backends import BackendFarm

from .helpers import ApiNginx

BACKENDS = ["b1", "b2", "b3", "b4", "b5"]


@pytest.fixture(scope="session")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendFarm]:
    """Five loopback backends; each answers with its own name."""
    backends = BackendFarm(tmp_path_factory.mktemp("farm"), BACKENDS)
    with backends:
        yield backends


@pytest.fixture(scope="module")
def shared_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiNginx]:
    """One api-mode nginx for tests that only use their own upstream names."""
    api = ApiNginx(tmp_path_factory.mktemp("api"), workers=2).start()
    yield api
    api.stop()


@pytest.fixture
def fresh_api(tmp_path: Path) -> Iterator[ApiNginx]:
    """An api-mode nginx of this test's own (not started yet)."""
    api = ApiNginx(tmp_path / "nginx", workers=2)
    yield api
    api.stop()
