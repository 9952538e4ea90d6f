"""The delivery task: POST one order event to the shop's endpoint, signed, on the `notifications` queue.

Thin like the other tasks: claim in one short transaction, POST with no transaction open, settle in
another (core/services/notify.py says why). The argument is only the event's id.

A hanging shop endpoint holds a task slot for up to DELIVERY_TIMEOUT. This queue shares the worker with
the payment queues (Procfile: one `worker` line), so at most half of a process's slots deliver at
once (`delivery_slots`); a delivery that finds them all busy is sent back to the queue with a short
countdown instead of waiting, so payments always keep the other half. Deliveries of different orders
never wait for each other beyond that.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from datetime import UTC, datetime
from typing import Any

import urllib3
from celery import Task

from core.db import transaction
from core.queues import NOTIFY_QUEUE, NOTIFY_TASK
from core.services import notify
from core.services.events import event_name
from core.services.units import UnitOfWork
from core.settings import Settings, get_settings
from core.webhook_signing import secret_key, signed_headers
from metrics import defs as metrics
from workers import app
from workers.celeryconfig import VISIBILITY_TIMEOUT

log = logging.getLogger(__name__)


BUSY_COUNTDOWN = (0.5, 2.0)  # seconds before a delivery that found no free slot tries again
# The longest retry wait sent as a broker countdown. A countdown message sits unacknowledged in a
# worker's memory until it is due, so a long outage of the shop with many events would pile them up
# there; longer waits are the sweep's relay (it sends each event once it is due).
MAX_COUNTDOWN = min(300.0, VISIBILITY_TIMEOUT / 2)
# qpay_event_deliveries_total's result for each attempt's verdict (a failed attempt will be retried).
_METRIC_RESULT = {"delivered": "delivered", "retry": "failed", "failed": "gave_up"}
_slots = threading.BoundedSemaphore(1)
_http: urllib3.PoolManager | None = None
_http_lock = threading.Lock()


def delivery_slots(concurrency: int) -> None:
    """At most half of this process's task slots (at least one) POST to the shop at once."""
    global _slots
    _slots = threading.BoundedSemaphore(max(1, concurrency // 2))


def _pool() -> urllib3.PoolManager:
    global _http
    with _http_lock:
        if _http is None:
            _http = urllib3.PoolManager(num_pools=4, maxsize=32, retries=False)
        return _http


def reset_pool() -> None:
    """After a fork: the parent's sockets are not ours."""
    global _http
    _http = None


def post_event(url: str, body: bytes, headers: dict[str, str],
               timeout: float = notify.DELIVERY_TIMEOUT) -> notify.AttemptResult:
    """One POST: no redirect followed, no retry, `timeout` for everything, at most 64 KiB of answer read."""
    started = time.monotonic()
    status: int | None = None
    error: str | None = None
    try:
        resp = _pool().request("POST", url, body=body, headers=headers, redirect=False, retries=False,
                               timeout=urllib3.Timeout(total=timeout), preload_content=False)
        try:
            status = resp.status
            resp.read(notify.MAX_ANSWER_BYTES, decode_content=False)
        finally:
            if resp.length_remaining or resp.length_remaining is None:
                resp.close()  # whatever is left unread is dropped with its connection
            resp.release_conn()
    except urllib3.exceptions.NewConnectionError as exc:  # (urllib3 files it under timeouts; it is not)
        error = f"connection failed: {_reason(exc)}"
    except urllib3.exceptions.TimeoutError:
        error = f"timeout after {timeout:g}s"
    except urllib3.exceptions.HTTPError as exc:
        error = f"{type(exc).__name__}: {_reason(exc)}"
    return notify.AttemptResult(status, error, int((time.monotonic() - started) * 1000))


def _reason(exc: Exception) -> str:
    # urllib3 wraps the socket error; its text names the host and port, never a secret.
    reason = getattr(exc, "reason", None)
    return str(reason or exc)[:200]


def deliver(event_id: int, settings: Settings, uow: UnitOfWork = transaction) -> notify.Settled | None:
    """One attempt for one event; None when there was nothing to do (delivered, failed, held)."""
    url, secret = settings.shop_webhook_url, settings.shop_webhook_secret
    if url is None or secret is None:
        return None
    started = datetime.now(UTC)
    with uow() as session:
        claimed = notify.claim(session, event_id, now=started)
    if claimed is None:
        return None
    body = claimed.body.encode("utf-8")
    headers = signed_headers(secret_key(secret.reveal()), claimed.name, int(time.time()), body)
    result = post_event(url, body, headers)
    with uow() as session:
        settled = notify.settle(session, settings, claimed, result, started=started, now=datetime.now(UTC))
    metrics.event_delivery(_METRIC_RESULT[settled.verdict])
    extra = {"event_id": claimed.name, "order_no": claimed.order_no, "attempt": claimed.attempt,
             "http_status": result.http_status, "duration_ms": result.duration_ms}
    if settled.verdict == "delivered":
        log.info("event %s delivered (attempt %d)", claimed.name, claimed.attempt, extra=extra)
    elif settled.verdict == "retry":
        log.warning("event %s: attempt %d failed (%s); next in %.1fs", claimed.name, claimed.attempt,
                    result.describe(), settled.countdown or 0, extra=extra)
    return settled


@app.task(name=NOTIFY_TASK, bind=True, queue=NOTIFY_QUEUE, max_retries=None,
          soft_time_limit=notify.DELIVERY_TIMEOUT + 20, time_limit=notify.DELIVERY_TIMEOUT + 30)
def deliver_event(self: Task, event_id: Any) -> str:
    """Push one event to SHOP_WEBHOOK_URL; schedule its next attempt or leave it to the sweep's relay."""
    if isinstance(event_id, bool) or not isinstance(event_id, int) or event_id <= 0:
        log.error("deliver_event: rejected argument %r (expected a shop_events id)", str(event_id)[:40])
        return "bad_argument"
    if not _slots.acquire(blocking=False):
        send_delivery(event_id, countdown=random.uniform(*BUSY_COUNTDOWN))
        return "busy"
    try:
        settled = deliver(event_id, get_settings())
    finally:
        _slots.release()
    if settled is None:
        return "noop"
    # A longer wait than MAX_COUNTDOWN is the sweep's: the event is due then, and the relay sends it.
    countdown = settled.countdown
    if settled.verdict == "retry" and countdown is not None and countdown <= MAX_COUNTDOWN:
        send_delivery(event_id, countdown=countdown)
    return settled.verdict


def send_delivery(event_id: int, countdown: float | None = None) -> bool:
    """Enqueue a delivery (the workers' publisher and the sweep's relay); False if the broker refused."""
    try:
        deliver_event.apply_async(args=[event_id], queue=NOTIFY_QUEUE, countdown=countdown)
    except Exception as exc:  # any broker failure: the event row is durable, the sweep relays it
        log.warning("enqueue of event %s failed (%s)", event_name(event_id), type(exc).__name__,
                    extra={"event_id": event_name(event_id), "error": type(exc).__name__})
        return False
    return True
