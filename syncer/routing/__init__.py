"""Traffic steering from Consul's L7 config entries (service-router, -splitter, -resolver).

Entries are parsed and validated (``entries``), compiled with the healthy instances into
pools and one routing table per entry service (``compile``), and handed to both sinks
through ``Desired``: reload mode renders them as native nginx (``render``), api mode
pushes them to the Lua router (``payload``). See docs/routing.md.
"""

from __future__ import annotations

from syncer.routing.names import pool_name

__all__ = ["pool_name"]
