"""reload vs api: one reproducible benchmark of syncer's two strategies (issue 4).

``python -m bench.run`` starts a real nginx, the dev Consul, loopback backends and the
syncer agent in each mode in turn, drives the same churn script and the same load
against both, and writes ``bench/results/report.md`` with PNG figures. See
``bench/README.md``.
"""
