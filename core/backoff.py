"""Retry delays: capped exponential backoff with equal jitter (resolution retries, shop notifications;
docs/architecture.md).

Equal jitter (half fixed, half random) rather than full jitter: callbacks for one outage arrive
together, the random half spreads their retries apart, and the fixed half guarantees the gaps grow
(never a near-zero retry that hammers a bank that is just failing).
"""

from __future__ import annotations

import random
from collections.abc import Callable


def retry_countdown(
    retries: int, *, base: float, cap: float, rand: Callable[[float, float], float] = random.uniform
) -> float:
    """Seconds before retry number `retries + 1`: in [d/2, d] where d = min(cap, base * 2**retries)."""
    ceiling = min(cap, base * 2 ** min(max(retries, 0), 62))
    half = ceiling / 2
    return half + rand(0.0, half)
