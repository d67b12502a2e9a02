"""From the latest healthy set per service to the ``Desired`` state for nginx."""

from __future__ import annotations

from collections.abc import Mapping

from syncer.model import Desired, Server, make_upstream


def desired_state(services: Mapping[str, tuple[Server, ...]]) -> Desired:
    return Desired({name: make_upstream(name, servers) for name, servers in services.items()})
