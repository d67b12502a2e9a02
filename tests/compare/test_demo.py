"""scripts/demo_compare.py (the `make demo` scenario 003 step) runs and goes as designed."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import pytest

from tests.compare.conftest import needs_nginx

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo_compare.py"


@needs_nginx
@pytest.mark.slow
def test_demo_compare_runs_as_designed() -> None:
    spec = importlib.util.spec_from_file_location("demo_compare", DEMO)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = io.StringIO()
    assert module.run(out) == 0, out.getvalue()
    text = out.getvalue()
    assert "| `GET /api/orders/{num}` | 10 | 100.0% | 100.0% | 100.0% | **DIFFERS** |" in text
    assert "compare (shadow):" in text
    assert "==> as designed" in text
