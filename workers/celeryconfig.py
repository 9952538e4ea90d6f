"""Celery settings (docs/architecture.md), read once from the environment when the app is built.

Every reliability setting says why it is there. Read by `workers/__init__.py` through
`app.config_from_object("workers.celeryconfig")`; nothing here talks to the broker or the database.

Environment (besides the core settings): BROKER_URL (else REDIS_URL), CELERY_VISIBILITY_TIMEOUT
(seconds, default 3600; Redis only), CELERY_SENTINEL_MASTER (the master name when the broker is a
`sentinel://` URL), BEAT_LOCK_URL and BEAT_LOCK_TTL (the beat owner lock, see workers/beatlock.py).
"""

from __future__ import annotations

import os

from kombu import Exchange, Queue

from core.env import SettingsError, env_float
from core.queues import (
    AMQP_TRANSPORT_OPTIONS,
    CALLBACK_QUEUE,
    NOTIFY_QUEUE,
    NOTIFY_TASK,
    RESOLVE_TASK,
    SWEEP_QUEUE,
    SWEEP_TASK,
    amqp_queues,
    is_amqp,
)
from core.settings import get_settings

_settings = get_settings()


# -- broker -----------------------------------------------------------------------------------------
# BROKER_URL (else REDIS_URL) may be redis://, rediss://, sentinel://host:26379;sentinel://host2:26379
# or amqp://: Celery picks the transport from the scheme (docs/configuration.md: BROKER_URL).
broker_url = _settings.broker_url
AMQP = is_amqp(broker_url)

# A message a worker took but did not acknowledge (acks_late, below) goes back to the queue only after
# this many seconds on Redis. Long, because a task ETA (a retry countdown) is also held unacknowledged:
# a countdown longer than this would be delivered twice. A whole worker that dies does not wait for it:
# its liveness key expires and a live worker restores its messages (workers/recovery.py).
VISIBILITY_TIMEOUT = env_float(os.environ, "CELERY_VISIBILITY_TIMEOUT", 3600.0, 1.0)
if _settings.retry_cap * 2 > VISIBILITY_TIMEOUT:
    raise SettingsError(
        "RESOLVE_RETRY_CAP must stay well below CELERY_VISIBILITY_TIMEOUT (at most half of it), "
        "or a retry countdown would outlive the broker's visibility window and run twice"
    )

broker_transport_options: dict[str, object]
if AMQP:
    # RabbitMQ returns a dead connection's unacknowledged messages at once; no visibility timeout.
    broker_transport_options = {**AMQP_TRANSPORT_OPTIONS, "connect_timeout": 5, "read_timeout": 30,
                                "write_timeout": 30}
    # Quorum queues on topic exchanges (task_queues below). Celery sees the quorum queues, turns global
    # QoS off (quorum queues refuse it) and starts native delayed delivery: a retry's countdown waits
    # in the broker's delay queues, not unacknowledged in a worker.
    worker_detect_quorum_queues = True
    # A countdown is routed by whole seconds: one under a second would be refused (Celery's
    # calculate_routing_key), so the first retry delay must be at least 1 s (RESOLVE_RETRY_BASE >= 2).
    if _settings.retry_base < 2:
        raise SettingsError("RESOLVE_RETRY_BASE must be at least 2 with an AMQP broker "
                            "(retry countdowns wait in RabbitMQ in whole seconds)")
else:
    broker_transport_options = {
        "visibility_timeout": VISIBILITY_TIMEOUT,
        # How often a worker looks for messages whose visibility window ran out. Kombu's default scan
        # period is ~100 s; follow the timeout so recovery is prompt.
        "unacked_restore_interval": max(1, min(10, int(VISIBILITY_TIMEOUT // 4))),
        "unacked_restore_throttle": 1,
        # A broker that vanishes without closing the TCP connection must not hang a publish forever.
        "socket_connect_timeout": 5,
        "socket_timeout": 30,
        "socket_keepalive": True,
    }
if os.environ.get("CELERY_SENTINEL_MASTER"):
    # sentinel:// URLs name the sentinels; the transport needs the master's name too.
    broker_transport_options["master_name"] = os.environ["CELERY_SENTINEL_MASTER"]

# Keep retrying the broker at start-up instead of exiting (Celery 6 changes the default).
broker_connection_retry_on_startup = True
# Sending a task (the sweep's re-enqueue) retries briefly, then fails loudly; the sweep counts it.
task_publish_retry = True
task_publish_retry_policy = {"max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 2}

# -- delivery guarantees ----------------------------------------------------------------------------
# Acknowledge after the task ran, not before: a worker that dies mid-task leaves the message to be
# delivered again. Safe because every task is idempotent (docs/architecture.md, guarantee 2).
task_acks_late = True
# ...and when the pool child is killed (SIGKILL, OOM) the parent requeues the message at once instead
# of acknowledging it as failed.
task_reject_on_worker_lost = True
# A worker reserves one message at a time, so a slow task never sits on a queue of others, and a
# crash puts back at most one message per process.
worker_prefetch_multiplier = 1
# On a lost broker connection the unacknowledged tasks will be redelivered; cancel the running
# copies rather than finish them twice (Celery warns when this is left unset).
worker_cancel_long_running_tasks_on_connection_loss = True

# -- payloads and results ---------------------------------------------------------------------------
# JSON only: pickle would let whoever can write to the broker run code in the worker.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
event_serializer = "json"
# No result backend: the state lives in the database (orders, pay_tokens, sweep_runs).
result_backend = None
task_ignore_result = True

# -- time limits ------------------------------------------------------------------------------------
# A bank call is a Nonce plus an Order request, each bounded by the client's (connect, read) timeouts;
# the soft limit leaves room for both and the database, the hard limit kills a truly stuck process.
RESOLVE_SOFT_LIMIT = 2 * (_settings.connect_timeout + _settings.read_timeout) + 30
RESOLVE_HARD_LIMIT = RESOLVE_SOFT_LIMIT + 30
# A sweep is many bank calls; it stops at the soft limit and the next pass continues.
# Only the prefork pool enforces both limits (gevent only the hard one). The threads pool (the
# Procfile's default, WORKER_POOL) ignores them: there the bank client's (connect, read) timeouts bound
# a resolution, a long sweep runs on to its end, and a stuck task holds its thread until a restart.
SWEEP_SOFT_LIMIT = max(600.0, _settings.sweep_interval)
SWEEP_HARD_LIMIT = SWEEP_SOFT_LIMIT + 60
task_soft_time_limit = RESOLVE_SOFT_LIMIT
task_time_limit = RESOLVE_HARD_LIMIT

# -- monitoring (Flower) ----------------------------------------------------------------------------
# Flower builds its view from these events; they carry only task names and ids (no secrets).
worker_send_task_events = True
task_send_sent_event = True
# The worker publishes them in batches, at most EVENTS_FLUSH_INTERVAL late (workers/consumer.py).
worker_consumer = "workers.consumer:Consumer"

# -- routing ----------------------------------------------------------------------------------------
# Fresh payments, sweeps and shop notifications never share a queue, so a big sweep or a dead shop
# endpoint cannot delay a callback.
task_routes = {
    RESOLVE_TASK: {"queue": CALLBACK_QUEUE},
    SWEEP_TASK: {"queue": SWEEP_QUEUE},
    # Pushes to the shop: a dead shop endpoint never sits in front of a payment.
    NOTIFY_TASK: {"queue": NOTIFY_QUEUE},
}
task_default_queue = CALLBACK_QUEUE
# Declared, so Flower's Broker view and /api/queues/length list every queue even when no worker is
# online to report what it consumes (Flower then falls back to these names). Each with its own
# exchange and routing key, exactly as Celery creates a missing queue: a bare Queue(name) would be
# bound to the default exchange and key, and a sweep would then be delivered to both queues.
# On RabbitMQ: quorum queues on topic exchanges, declared as the web's sender declares them (core/queues.py).
task_queues: object = amqp_queues() if AMQP else tuple(
    Queue(name, Exchange(name, type="direct"), routing_key=name)
    for name in (CALLBACK_QUEUE, SWEEP_QUEUE, NOTIFY_QUEUE))

# -- beat -------------------------------------------------------------------------------------------
timezone = "UTC"
enable_utc = True
beat_schedule = {
    "qpay-sweep": {
        "task": SWEEP_TASK,
        "schedule": _settings.sweep_interval,
        # A sweep message nobody took before the next one is due is dropped, not piled up.
        "options": {"queue": SWEEP_QUEUE, "expires": _settings.sweep_interval},
    },
}
# Only the holder of the Redis owner lock sends scheduled tasks (workers/beatlock.py).
beat_scheduler = "workers.beatlock:LockedScheduler"
BEAT_LOCK_TTL = env_float(os.environ, "BEAT_LOCK_TTL", 30.0, 3.0)
# Beat wakes at least this often, so the owner renews its lock well before it expires.
beat_max_loop_interval = BEAT_LOCK_TTL / 3
