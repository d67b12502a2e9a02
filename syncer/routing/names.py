"""Names shared by planning, both sinks and the templates."""

from __future__ import annotations

import re

# Subset names are DNS labels (Consul's validateServiceSubset), so a pool name with a
# dot is never a subset-less service name of the same spelling unless a service is
# itself called "web.v2"; planning refuses that collision.
SUBSET_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def pool_name(service: str, subset: str = "") -> str:
    """The nginx upstream holding the instances of one (service, subset) target."""
    return f"{service}.{subset}" if subset else service


def var_suffix(entry: str) -> str:
    """``web-api`` -> ``web_api``: the part of an nginx variable name for an entry service."""
    return re.sub(r"[^A-Za-z0-9_]", "_", entry)
