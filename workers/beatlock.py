"""Exactly one beat sends the schedule: the holder of a Redis lock (SET NX EX), renewed every tick.

Two `celery beat` processes (a redeploy overlapping the old one, or a mistaken scale of 2) would each
send `qpay.sweep` on every interval. With this scheduler both run, but only the lock holder sends;
the other checks again every few seconds and takes over within BEAT_LOCK_TTL seconds when the owner
dies. The sweep is safe even if two passes do overlap (core/services/sweep.py); the lock only keeps
the schedule from being doubled.

The lock lives in BEAT_LOCK_URL, by default the broker when that is a redis:// or rediss:// URL, else
REDIS_URL when that is one (BROKER_URL=amqp://... beside a Redis add-on). With a sentinel:// or amqp://
broker and no plain Redis URL, beat refuses to start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import uuid
from typing import Any

import redis
from celery.beat import PersistentScheduler

from core.budget import shared_redis_url
from core.leases import ACQUIRE_OR_RENEW, RELEASE
from metrics import defs as metrics

log = logging.getLogger(__name__)

LOCK_KEY = "qpay:beat:owner"

def lock_url(env: dict[str, str] | None = None, broker_url: str = "") -> str:
    """The Redis that holds the lock; a clear error when none is configured."""
    url = shared_redis_url(dict(os.environ) if env is None else env, broker_url)
    if url is None:
        raise RuntimeError(
            "the beat owner lock needs a plain Redis URL: set BEAT_LOCK_URL (or REDIS_URL) when the broker "
            "is a sentinel:// or amqp:// URL"
        )
    return url


class OwnerLock:
    """A lease in Redis: `hold()` takes or renews it, `release()` gives it up if still ours."""

    def __init__(self, client: redis.Redis, ttl: int, key: str = LOCK_KEY) -> None:
        self.client = client
        self.ttl = max(1, int(ttl))
        self.key = key
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.held = False

    def hold(self) -> bool:
        try:
            got = bool(self.client.eval(ACQUIRE_OR_RENEW, 1, self.key, self.token, self.ttl))
        except redis.RedisError as exc:
            # Unreachable lock store: do not send; better a late sweep than a doubled schedule.
            log.warning("beat lock: Redis unavailable (%s); not sending scheduled tasks", type(exc).__name__)
            got = False
        if got != self.held:
            log.info("beat lock %s (%s)", "acquired" if got else "lost", self.token)
        self.held = got
        metrics.beat_lock(got)
        return got

    def release(self) -> None:
        with contextlib.suppress(redis.RedisError):  # otherwise it expires on its own after ttl seconds
            self.client.eval(RELEASE, 1, self.key, self.token)
        self.held = False
        metrics.beat_lock(False)


class LockedScheduler(PersistentScheduler):
    """The default file-backed scheduler, sending only while it owns the beat lock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        app = kwargs.get("app") or args[0]
        ttl = int(app.conf.get("BEAT_LOCK_TTL") or 30)
        url = lock_url(broker_url=str(app.conf.broker_url or ""))
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        self.owner_lock = OwnerLock(client, ttl)
        # Check again well before a lease would lapse.
        self.lock_check_interval = max(1.0, ttl / 3)
        super().__init__(*args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if not self.owner_lock.hold():
            return self.lock_check_interval
        return min(super().tick(*args, **kwargs), self.lock_check_interval)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.owner_lock.release()

    @property
    def info(self) -> str:
        return f"owner lock {LOCK_KEY} (ttl {self.owner_lock.ttl}s)"
