"""One sweep pass at a time, across every worker: a lease in Redis, renewed while the pass runs.

Two passes at once are safe (core/services/sweep.py), but no use: a pass that overruns beat's interval
(a large backlog, a slow bank) would be joined by the next one, and both would share one bank budget.
So a pass first takes `qpay:sweep:running` (SET NX EX, core/leases.py); a pass that finds it taken is
skipped (beat sends another one in SWEEP_INTERVAL; an operator's `sweep run` says so and exits 1). A
thread renews the lease every third of its TTL, so a pass may run as long as it needs, and a worker
that dies mid-pass frees it within the TTL. The lease lives where the bank budget's slots do
(core.budget.shared_redis_url); without a shared Redis (an AMQP broker, no BEAT_LOCK_URL nor Redis
REDIS_URL) the lock is per process. If the
Redis does not answer, the pass runs anyway: the sweep is the safety net, and overlap is only waste.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import redis

from core.budget import shared_redis_url
from core.leases import ACQUIRE_OR_RENEW, RELEASE

log = logging.getLogger(__name__)

SWEEP_LOCK_KEY = "qpay:sweep:running"
SWEEP_LOCK_TTL = 60  # seconds a dead worker's lease outlives it

_local = threading.Lock()
_clients: dict[str, redis.Redis] = {}


def _client(url: str) -> redis.Redis:
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    return client


@contextmanager
def exclusive_pass(broker_url: str, *, ttl: int = SWEEP_LOCK_TTL) -> Iterator[bool]:
    """Yields True when this pass may run (the lease is ours, or the lock store is unreachable),
    False when another pass holds it."""
    url = shared_redis_url(os.environ, broker_url)
    if url is None:
        got = _local.acquire(blocking=False)
        try:
            yield got
        finally:
            if got:
                _local.release()
        return
    client = _client(url)
    token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    try:
        got = bool(client.eval(ACQUIRE_OR_RENEW, 1, SWEEP_LOCK_KEY, token, ttl))
    except redis.RedisError as exc:
        log.warning("sweep lock: Redis unavailable (%s); running the pass without it", type(exc).__name__)
        yield True
        return
    if not got:
        yield False
        return
    done = threading.Event()

    def renew() -> None:
        while not done.wait(max(1.0, ttl / 3)):
            with suppress(redis.RedisError):  # a missed renewal is retried; the lease lasts ttl
                client.eval(ACQUIRE_OR_RENEW, 1, SWEEP_LOCK_KEY, token, ttl)

    renewer = threading.Thread(target=renew, name="sweep-lock", daemon=True)
    renewer.start()
    try:
        yield True
    finally:
        done.set()
        renewer.join(timeout=5)
        with suppress(redis.RedisError):  # otherwise it expires on its own after ttl seconds
            client.eval(RELEASE, 1, SWEEP_LOCK_KEY, token)
