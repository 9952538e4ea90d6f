"""The bank request budget: at most QPAY_BANK_RATE requests per second, every process together.

Strangers decide how many PayTokens reach us; they must not decide how hard we ask the bank. Every
HTTP request to the bank (Nonce and Order alike) first takes a slot: the next free moment, spaced
1/rate apart, reserved atomically in Redis (a Lua script reading Redis's own clock, so the hosts'
clocks do not matter). The caller sleeps until its slot: waiting is not a failure, and the client
does not count it against the call's deadline.

Where the slots live: BEAT_LOCK_URL, else the broker when it is redis://, rediss:// or unix://, else
REDIS_URL when it is (the same Redis as beat's owner lock). With an AMQP or sentinel:// broker and no
plain Redis URL there is no shared Redis: each process then keeps its own budget of QPAY_BANK_RATE (weaker: N
processes may send N times the rate) and says so at start-up. If the Redis stops answering, the
process falls back to its own budget until it answers again (logged), rather than stop paying.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.settings import Settings

__all__ = ["BUDGET_KEY", "LocalBudget", "RedisBudget", "bank_budget", "shared_redis_url"]

log = logging.getLogger(__name__)

BUDGET_KEY = "qpay:bank:budget"
_TIMEOUT = 1.0  # seconds for the budget's Redis round trip; then the local budget takes over
_WARN_EVERY = 60.0

# KEYS[1]: the next free slot (µs, Redis clock). ARGV[1]: µs between requests. Returns the µs to wait.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local slot = tonumber(redis.call('GET', KEYS[1]) or '0')
if slot < now then slot = now end
redis.call('SET', KEYS[1], string.format('%d', slot + tonumber(ARGV[1])), 'PX', ARGV[2])
return slot - now
"""


def shared_redis_url(env: Mapping[str, str], broker_url: str) -> str | None:
    """The plain Redis every process shares, or None: BEAT_LOCK_URL, else the broker when it is Redis,
    else REDIS_URL when that is (BROKER_URL=amqp://... beside a Redis add-on)."""
    plain = ("redis://", "rediss://", "unix://")
    if env.get("BEAT_LOCK_URL"):
        candidates = [env["BEAT_LOCK_URL"]]
    else:
        candidates = [broker_url, env.get("REDIS_URL", "")]
    return next((url for url in candidates if url.startswith(plain)), None)


class LocalBudget:
    """The same spacing for this process alone (threads share it)."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = 0.0

    def reserve(self) -> float:
        """Seconds until this caller's slot (reserved now)."""
        with self._lock:
            now = self._clock()
            slot = max(self._next, now)
            self._next = slot + self._interval
            return slot - now

    def acquire(self) -> float:
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)
        return wait


class RedisBudget:
    """Slots reserved in Redis, shared by every process that uses the same key."""

    def __init__(self, client: redis.Redis, rate: float, *, key: str = BUDGET_KEY,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        self._interval_us = max(1, round(1_000_000 / rate))
        self._key = key
        self._sleep = sleep
        self._fallback = LocalBudget(rate, sleep=sleep)
        self._warned = 0.0
        self._ttl_ms = 60_000  # an idle budget's key vanishes; a slot is never reserved that far ahead

    @classmethod
    def from_url(cls, url: str, rate: float) -> RedisBudget:
        client = redis.Redis.from_url(url, socket_connect_timeout=_TIMEOUT, socket_timeout=_TIMEOUT,
                                      health_check_interval=0, retry=Retry(NoBackoff(), 0))
        return cls(client, rate)

    def acquire(self) -> float:
        """Sleep until this request's slot; returns the seconds waited."""
        try:
            wait = int(self._client.eval(_RESERVE, 1, self._key, self._interval_us, self._ttl_ms)) / 1e6
        except redis.RedisError as exc:
            now = time.monotonic()
            if now - self._warned > _WARN_EVERY:
                self._warned = now
                log.warning("bank budget: Redis unavailable (%s); this process keeps its own budget "
                            "meanwhile", type(exc).__name__)
            return self._fallback.acquire()
        if wait > 0:
            self._sleep(wait)
        return wait


Budget = LocalBudget | RedisBudget


def bank_budget(settings: Settings, env: Mapping[str, str] | None = None) -> Budget | None:
    """The budget this process's bank clients share; None when QPAY_BANK_RATE is 0 (no limit)."""
    if settings.bank_rate <= 0:
        return None
    url = shared_redis_url(os.environ if env is None else env, settings.broker_url)
    if url is None:
        log.warning("bank budget: no shared Redis (the broker is not redis:// and BEAT_LOCK_URL is unset); "
                    "each process keeps its own budget of %g requests/s", settings.bank_rate)
        return LocalBudget(settings.bank_rate)
    return RedisBudget.from_url(url, settings.bank_rate)
