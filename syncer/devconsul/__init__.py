"""dev-consul: an in-memory stand-in for a Consul agent's HTTP API, for development and tests.

It is not Consul: no Raft, no gossip, no DNS, no persistence. See docs/dev-consul.md.
"""

from syncer.devconsul.faults import Fault, FaultSet
from syncer.devconsul.server import DevConsul

__all__ = ["DevConsul", "Fault", "FaultSet"]
