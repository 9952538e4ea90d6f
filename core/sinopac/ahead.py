"""The Nonce of a bank call still to come, fetched while another call's Order request is in flight.

A settlement that confirms a payment asks for its OrderQuery's Nonce during the OrderPayQuery: one bank
round trip less (PROTOCOL.md §2 still holds: every Order request carries a nonce fetched for it alone).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from core.secrets import Secret
from core.sinopac.transport import CallState, Deadline

__all__ = ["NonceAhead"]

# Fetches the Nonce of a call that will follow another one (NonceAhead): bounded like the bank pool, one
# per process (an executor's threads do not survive a fork; a prefork child builds its own).
_AHEAD: dict[int, ThreadPoolExecutor] = {}


def _ahead_pool() -> ThreadPoolExecutor:
    pid = os.getpid()
    pool = _AHEAD.get(pid)
    if pool is None:
        _AHEAD.clear()
        pool = _AHEAD.setdefault(pid, ThreadPoolExecutor(max_workers=32, thread_name_prefix="bank-nonce"))
    return pool


class NonceAhead:
    """The Nonce of a `service` call still to come, fetched while another call's Order request is in
    flight (one bank round trip less for a settlement's confirmation). Started by that other call once
    its own Nonce was granted (so a key set the bank refuses at the Nonce is not tried twice at once),
    under the same X-KeyID. Still one fresh nonce per Order call (§2): taken once, by the next call
    signed with that X-KeyID, or dropped unused. Its failure is that call's failure, as if it had asked
    for the nonce itself."""

    def __init__(self, service: str) -> None:
        self._service = service
        self._future: Future[str] | None = None
        self._key_id: Secret | None = None
        self._state = CallState(service, Deadline(0))
        self._taken = False

    def start(self, fetch: Callable[[CallState, Secret], str], key_id: Secret, timeout: float) -> None:
        """Fetch it now, in the background (once: a second start is ignored)."""
        if self._future is None:
            self._key_id, self._state = key_id, CallState(self._service, Deadline(timeout))
            self._future = _ahead_pool().submit(fetch, self._state, key_id)

    def take(self, state: CallState, key_id: Secret) -> str | None:
        """The nonce for `state`'s Order request; None if never started, taken, or for another key."""
        if self._future is None or self._taken or key_id is not self._key_id:
            return None
        self._taken = True
        try:
            return self._future.result()
        finally:
            state.http_status = self._state.http_status
