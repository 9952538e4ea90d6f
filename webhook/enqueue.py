"""Send resolve tasks by name to the broker, never waiting long for it.

A broker outage must not delay the bank's acknowledgement: the PayToken row is already committed
and the sweep re-enqueues what was never sent. So connects are bounded (~1 s), publishing is not
retried, and any failure is logged and reported as False. This Celery app only sends; it knows no
task code (workers/ does), which keeps the web process light.

On a plain `redis://` broker the resolve message is built here (webhook/taskmessage.py) and sent
with one LPUSH on a redis-py client kept per process: a third of the cost of Celery's send_task.
Other brokers (rediss://, sentinel://, amqp://) go through send_task. On amqp:// the queues are
declared exactly as the workers declare them (quorum, topic: core/queues.py) and every publish waits
for RabbitMQ's confirm, so True means the broker has the message.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Protocol

import redis
from celery import Celery
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.queues import (
    AMQP_TRANSPORT_OPTIONS,
    CALLBACK_QUEUE,
    NOTIFY_QUEUE,
    NOTIFY_TASK,
    RESOLVE_TASK,
    amqp_queues,
    is_amqp,
)
from webhook.taskmessage import default_origin, task_message

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 1.0


class Enqueuer(Protocol):
    """What the views need from the broker; tests pass a fake."""

    def send_resolve(self, token_id: int) -> bool: ...

    def ping(self) -> None: ...


def _transport_options(broker_url: str, timeout: float) -> dict[str, Any]:
    if is_amqp(broker_url):
        return {**AMQP_TRANSPORT_OPTIONS, "max_retries": 0, "connect_timeout": timeout,
                "read_timeout": timeout, "write_timeout": timeout}
    return {
        "max_retries": 0,  # kombu's ensure_connection on publish: no reconnect loop
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        "retry_on_timeout": False,
        "health_check_interval": 0,
    }


class CeleryEnqueuer:
    """Sends `qpay.resolve_pay_token` to the callbacks queue; one lazily built app per process."""

    def __init__(self, broker_url: str, *, timeout: float = CONNECT_TIMEOUT) -> None:
        self._broker_url = broker_url
        self._timeout = timeout
        self._app: Celery | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self._direct = broker_url.startswith("redis://")
        self._redis: tuple[int, redis.Redis, str] | None = None  # (pid, client, origin)

    def __repr__(self) -> str:  # the URL may hold a password
        return "CeleryEnqueuer()"

    def _celery(self) -> Celery:
        # Built on first use and again after a fork: a connection pool must not cross processes.
        with self._lock:
            if self._app is None or self._pid != os.getpid():
                app = Celery("qpay-webhook", broker=self._broker_url, set_as_current=False)
                app.conf.update(
                    broker_connection_timeout=self._timeout,
                    broker_connection_retry=False,
                    broker_connection_retry_on_startup=False,
                    broker_connection_max_retries=0,
                    broker_transport_options=_transport_options(self._broker_url, self._timeout),
                    broker_pool_limit=10,
                    task_serializer="json",
                    accept_content=["json"],
                    task_publish_retry=False,
                    task_default_queue=CALLBACK_QUEUE,
                )
                if is_amqp(self._broker_url):
                    app.conf.task_queues = amqp_queues()
                self._app = app
                self._pid = os.getpid()
            return self._app

    def _redis_client(self) -> tuple[redis.Redis, str]:
        # Per process, like the Celery app: a forked child must not share the parent's sockets.
        current = self._redis
        if current is None or current[0] != os.getpid():
            with self._lock:
                current = self._redis
                if current is None or current[0] != os.getpid():
                    client = redis.Redis.from_url(
                        self._broker_url,
                        socket_connect_timeout=self._timeout,
                        socket_timeout=self._timeout,
                        retry=Retry(NoBackoff(), 0),  # one try: a dead broker is the sweep's job
                        health_check_interval=0,
                    )
                    current = self._redis = (os.getpid(), client, default_origin())
        return current[1], current[2]

    def _publish(self, task: str, queue: str, item_id: int) -> None:
        if self._direct:
            client, origin = self._redis_client()
            client.lpush(queue, task_message(task, [item_id], queue=queue, origin=origin))
        else:
            self._celery().send_task(task, args=[item_id], queue=queue, retry=False)

    def _send(self, task: str, queue: str, item_id: int, what: str) -> bool:
        try:
            self._publish(task, queue, item_id)
        except Exception as exc:  # any broker failure: the sweep owns the row now
            log.warning(
                "enqueue failed; the sweep will re-enqueue",
                extra={what: item_id, "error": type(exc).__name__},
            )
            return False
        return True

    def send_resolve(self, token_id: int) -> bool:
        """True if the broker accepted the task; False (logged) if it is unreachable."""
        return self._send(RESOLVE_TASK, CALLBACK_QUEUE, token_id, "token_id")

    def send_event(self, event_id: int) -> bool:
        """Start one shop event's delivery (notifications queue); False (logged) if the broker is down."""
        return self._send(NOTIFY_TASK, NOTIFY_QUEUE, event_id, "event_id")

    def ping(self) -> None:
        """Raise if the broker cannot be reached within the timeout (for /readyz)."""
        with self._celery().connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=self._timeout)
            if conn.transport.driver_type == "redis":
                conn.default_channel.client.ping()


class NullEnqueuer:
    """For processes without a broker (tests of pure HTTP behaviour): always reports failure."""

    def send_resolve(self, token_id: int) -> bool:
        return False

    def send_event(self, event_id: int) -> bool:
        return False

    def ping(self) -> None:
        raise ConnectionError("no broker configured")
