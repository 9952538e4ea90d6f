"""The resolve and sweep tasks (shop notifications: workers/notify.py), each as thin as a view:
take ids, open a transaction, call one service.

Arguments are only ids (a pay_tokens row id), never a PayToken, an amount or a key, so the broker,
Flower and the logs hold nothing sensitive.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Task
from sqlalchemy.exc import OperationalError

from core.backoff import retry_countdown
from core.db import transaction
from core.logging import bind_context
from core.queues import CALLBACK_QUEUE, RESOLVE_TASK, SWEEP_QUEUE, SWEEP_TASK
from core.services.resolution import record_failed_attempt, resolve_token
from core.services.sweep import run_sweep
from core.settings import Settings, get_settings
from core.sinopac.client import BankClient
from metrics import defs as metrics
from workers import app
from workers.bank import client_for, records_with_the_work
from workers.celeryconfig import RESOLVE_HARD_LIMIT, RESOLVE_SOFT_LIMIT, SWEEP_HARD_LIMIT, SWEEP_SOFT_LIMIT
from workers.notify import send_delivery
from workers.sweeplock import exclusive_pass

log = logging.getLogger(__name__)


@app.task(
    name=RESOLVE_TASK,
    bind=True,
    queue=CALLBACK_QUEUE,
    soft_time_limit=RESOLVE_SOFT_LIMIT,
    time_limit=RESOLVE_HARD_LIMIT,
    max_retries=None,  # bounded by settings.retry_max below, read at run time
)
def resolve_pay_token(self: Task, token_id: Any) -> str:
    """Ask the bank what a stored PayToken paid and settle its order; retry only transient failures."""
    if isinstance(token_id, bool) or not isinstance(token_id, int) or token_id <= 0:
        log.error("resolve_pay_token: rejected argument %r (expected a pay_tokens id)", str(token_id)[:40])
        return "bad_argument"
    settings = get_settings()
    retries = int(self.request.retries or 0)
    kind: str
    error: str | None
    label: str | None = None
    try:
        # A unit of work, not a session: no transaction is open while the bank answers; the bank
        # calls are recorded by the resolution's next transaction, its write (workers/bank.py).
        with records_with_the_work() as unit_of_work:
            outcome = resolve_token(unit_of_work, _shop_client, settings, token_id)
    except OperationalError as exc:
        # The database is unreachable: nothing was changed. Same backoff as a bank outage; after the
        # last retry the stored token is the sweep's (it re-enqueues unresolved tokens).
        kind, error = "transient", f"database unavailable: {type(exc.orig).__name__}"
    except Exception as exc:  # a bug or a surprise: counted like any failure, so no token crash-loops
        kind, error = _unexpected(settings, token_id, exc)
    else:
        kind, error, label = outcome.kind, outcome.error, outcome.token_label
        if outcome.received_at is not None:  # committed: the order reached its final state just now
            metrics.settled(time.time() - outcome.received_at.timestamp())
    extra = {"token_id": token_id, "outcome": kind, "task_id": self.request.id, "retries": retries}
    if kind == "transient":
        if retries >= settings.retry_max:
            log.warning(
                "token %s still unresolved after %d retries (%s); left for the sweep",
                token_id, retries, error, extra=extra,
            )
            return kind
        countdown = retry_countdown(retries, base=settings.retry_base, cap=settings.retry_cap)
        metrics.resolve_retry()
        log.info("token %s: transient failure (%s); retry in %.2fs", token_id, error, countdown, extra=extra)
        raise self.retry(countdown=countdown, max_retries=settings.retry_max)
    if kind == "dead":
        # The one ALERT for this token: only the attempt that made it dead returns "dead".
        log.error("ALERT token %s (%s): dead after %d failed resolutions (last: %s); never re-enqueued, its "
                  "order is settled by the sweep's OrderQuery; replay it with `flask --app webhook tokens "
                  "replay`", token_id, label or "?", settings.max_attempts, error,
                  extra={**extra, "pay_token": label})
    elif kind == "protocol_error":
        # The bank's reply could not be trusted (bad Sign, undecryptable, malformed): the token is parked
        # as untrusted, never retried blindly; someone must look. The one ALERT line for this case.
        log.error("ALERT token %s (%s): untrusted bank reply: %s; token parked as untrusted, its order is "
                  "settled by the sweep's OrderQuery; replay it with `flask --app webhook tokens replay`",
                  token_id, label or "?", error, extra={**extra, "pay_token": label})
    elif kind == "review":
        log.error("ALERT token %s: order needs review: %s", token_id, error, extra=extra)
    elif kind == "rejected":
        log.warning("token %s rejected by the bank: %s", token_id, error, extra=extra)
    else:
        log.info("token %s resolved: %s", token_id, kind, extra=extra)
    return kind


def _shop_client(shop_no: str) -> BankClient:
    """The token's shop's client; from here on the task's log lines carry the shop (the task's context
    is reset after it runs, see workers/signals.py)."""
    bind_context(shop_no=shop_no)
    return client_for(shop_no)


def _unexpected(settings: Settings, token_id: int, exc: Exception) -> tuple[str, str]:
    """Count an unexpected failure on the token: ("dead", error) when it was the last allowed attempt,
    else ("transient", error), retried with the same backoff as an outage."""
    error = f"unexpected {type(exc).__name__}"
    log.exception("resolve of token %s failed unexpectedly", token_id, extra={"token_id": token_id})
    try:
        died = record_failed_attempt(transaction, settings, token_id, error)
    except OperationalError:
        died = False  # the database is down: nothing can be counted now
    return ("dead" if died else "transient"), error


def _enqueue_resolve(token_id: int) -> bool:
    """The sweep's Enqueue: True once the broker took the task, False when it cannot be reached (after
    celeryconfig's short publish retries); the sweep counts that and tries again next pass."""
    try:
        resolve_pay_token.apply_async(args=[token_id], queue=CALLBACK_QUEUE)
    except Exception as exc:  # any broker failure (kombu OperationalError, redis ConnectionError, ...)
        log.warning("enqueue of token %s failed (%s)", token_id, type(exc).__name__,
                    extra={"token_id": token_id, "error": type(exc).__name__})
        return False
    return True


@app.task(
    name=SWEEP_TASK,
    queue=SWEEP_QUEUE,
    soft_time_limit=SWEEP_SOFT_LIMIT,
    time_limit=SWEEP_HARD_LIMIT,
    # Acknowledged on receipt: a lost sweep is replaced by beat's next one, and an unacknowledged
    # sweep would be cancelled mid-pass whenever the broker connection drops.
    acks_late=False,
)
def sweep() -> dict[str, int]:
    """One reconciliation pass (core/services/sweep.py), skipped while another one runs."""
    settings = get_settings()
    with exclusive_pass(settings.broker_url) as ours:
        if not ours:
            log.info("sweep skipped: another pass is running", extra={"outcome": "skipped"})
            metrics.sweep_run("skipped")
            return {"skipped": 1}
        return _sweep_pass(settings)


def _sweep_pass(settings: Settings) -> dict[str, int]:
    try:
        relay = send_delivery if settings.shop_webhook_url is not None else None
        counts = run_sweep(transaction, client_for, settings, _enqueue_resolve, relay=relay)
    except OperationalError as exc:
        # The database is unreachable: nothing can be read or settled now; beat sends the next pass.
        log.warning("sweep skipped: database unavailable (%s)", type(exc.orig).__name__,
                    extra={"outcome": "db_unavailable"})
        metrics.sweep_run("failed")
        return {"errors": 1}
    except Exception:
        metrics.sweep_run("failed")
        raise
    metrics.sweep_run("errors" if counts.errors else "ok", counts.by_step)
    return counts.as_dict()
