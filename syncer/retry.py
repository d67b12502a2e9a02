"""The one backoff policy for retries: exponential from ``initial`` up to ``maximum``,
plus up to ``jitter`` seconds at random so many retriers do not move in step.

Built from tenacity's classic pieces, which every supported tenacity version has.
"""

from __future__ import annotations

from tenacity import wait_exponential, wait_random
from tenacity.wait import wait_base


def backoff(initial: float, maximum: float, jitter: float) -> wait_base:
    return wait_exponential(multiplier=initial, max=maximum) + wait_random(0, jitter)
