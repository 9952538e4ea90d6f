"""Polling with a deadline: the only way tests wait for something."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.05, message: str = "condition"
) -> T:
    """Call `predicate` until it returns something truthy; raise TimeoutError after `timeout` seconds.

    Exceptions from the predicate count as "not yet" (a server still starting refuses connections);
    the last one is chained to the TimeoutError so a failure says why.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {message}") from last_exc
        time.sleep(interval)  # pacing between polls, not synchronisation
