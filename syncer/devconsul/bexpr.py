"""go-bexpr for dev-consul's ``?filter=``: the evaluator lives in ``syncer.filterexpr``.

syncer itself resolves service-resolver subsets with the same evaluator, so it sits in
a neutral module that both dev-consul and the agent import.
"""

from __future__ import annotations

from syncer.filterexpr import Field, Filter, FilterError, parse

__all__ = ["Field", "Filter", "FilterError", "parse"]
