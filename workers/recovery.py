"""A dead worker's unacknowledged tasks back on the queue in seconds, on the Redis broker.

Redis has no connection-bound deliveries: kombu keeps a taken, unacknowledged message in the
`unacked` hash and puts it back only when CELERY_VISIBILITY_TIMEOUT (3600 s) has passed since it was
taken. That timeout must stay long, because a worker also holds a retry's countdown (an ETA task)
unacknowledged until it is due; a short one would deliver those twice. (AMQP needs none of this: the
broker returns a connection's unacknowledged messages the moment the connection drops.)

So each worker says which messages it holds, and that it is alive:
- on receipt of a task (ETA ones included) it records `delivery tag -> worker id` in the hash
  OWNERS_KEY, in the MULTI that enters the message in kombu's `unacked` hash
  (workers/redis_transport.py);
- it keeps a key `qpay:worker:<id>:alive` alive with a TTL of LIVENESS_TTL s, renewed every
  LIVENESS_TTL / 5 s by a thread;
- every REAP_INTERVAL s (and once when it starts) it puts back every message whose owner's key is
  gone, with kombu's own `restore_by_tag` (the same move the visibility timeout makes), and forgets
  the owner entries of messages already acknowledged.
A worker SIGKILLed is dead to the others at most LIVENESS_TTL s later; its messages are queued again
within REAP_INTERVAL s more by any live worker, a replacement included. A live worker that cannot
reach Redis for longer than LIVENESS_TTL may see its messages run twice: tasks are idempotent.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from typing import Any

from celery import Celery

log = logging.getLogger(__name__)

OWNERS_KEY = "qpay:unacked:owner"
ALIVE_KEY = "qpay:worker:{}:alive"
LIVENESS_TTL = 10.0  # seconds without a heartbeat before a worker's messages are restored
REAP_INTERVAL = 3.0

_worker_id = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
_lock = threading.Lock()
_state: dict[str, bool] = {}  # "enabled": this worker's broker is Redis and the thread runs
_stop = threading.Event()
_apps: list[Celery] = []  # the worker's app (attach), for owner() to start the thread with


def worker_id() -> str:
    return _worker_id


def ensure_started(app: Celery) -> bool:
    """Start this worker's heartbeat and reaper thread once (Redis brokers only). The first heartbeat
    is written before this returns, so no owner entry of ours is ever seen without a live owner."""
    if "enabled" in _state:
        return _state["enabled"]
    with _lock:
        if "enabled" not in _state:
            with app.connection_for_write() as conn:
                enabled = conn.transport.driver_type == "redis"
            if enabled:
                _stop.clear()
                _heartbeat(app)
                threading.Thread(target=_loop, args=(app,), name="qpay-liveness", daemon=True).start()
            _state["enabled"] = enabled
    return _state["enabled"]


def attach(app: Celery) -> None:
    """The worker's app, set when the worker starts (before it consumes): owner() starts with it."""
    _apps[:] = [app]


def attach_none() -> None:
    """Forget the attached app (tests)."""
    _apps.clear()


def owner() -> str | None:
    """This worker's id, to record as the owner of a message it has just taken; None when recovery
    is off (not a Redis broker, or no worker app attached). Starts the heartbeat on first use, so
    its liveness key exists before its first owner entry."""
    if not _apps or not ensure_started(_apps[0]):
        return None
    return _worker_id


def reap(app: Celery) -> int:
    """Put back the messages of workers whose liveness key has expired; returns how many."""
    restored = 0
    with app.connection_for_write() as conn:
        channel: Any = conn.default_channel
        client = channel.client
        # Owners first: an owner entry is written with its message's `unacked` entry (one MULTI), so an
        # owner whose message is no longer there was acknowledged (not taken after this read).
        owners = {_text(k): _text(v) for k, v in client.hgetall(OWNERS_KEY).items()}
        held = {_text(k) for k in client.hkeys(channel.unacked_key)}
        gone = [tag for tag in owners if tag not in held]
        if gone:
            client.hdel(OWNERS_KEY, *gone)
        live: dict[str, bool] = {}
        for tag, owner in owners.items():
            if tag not in held:
                continue
            if owner not in live:
                live[owner] = bool(client.exists(ALIVE_KEY.format(owner)))
            if not live[owner]:
                channel.qos.restore_by_tag(tag, client)
                client.hdel(OWNERS_KEY, tag)
                restored += 1
    if restored:
        log.warning("restored the unacknowledged tasks of a dead worker", extra={"restored": restored})
    return restored


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _heartbeat(app: Celery) -> None:
    with app.connection_for_write() as conn:
        conn.default_channel.client.set(ALIVE_KEY.format(_worker_id), "1", px=int(LIVENESS_TTL * 1000))


def _loop(app: Celery) -> None:
    """Heartbeat every LIVENESS_TTL / 5 s, reap every REAP_INTERVAL s, until the process ends."""
    tick = min(LIVENESS_TTL / 5, REAP_INTERVAL)
    since_reap = REAP_INTERVAL  # reap at once: a replacement clears its predecessor's messages
    while not _stop.is_set():
        try:
            _heartbeat(app)
            if since_reap >= REAP_INTERVAL:
                since_reap = 0.0
                reap(app)
        except Exception as exc:  # broker down: keep trying; redelivery falls back to the timeout
            log.warning("worker liveness: broker unreachable", extra={"error": type(exc).__name__})
        _stop.wait(tick)
        since_reap += tick


def stop() -> None:
    """End the thread (a worker process simply exits; tests that started one call this)."""
    _stop.set()
    _state.clear()
