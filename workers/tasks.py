"""The resolve and sweep tasks (shop notifications: workers/notify.py), each as thin as a view:
take ids, open a transaction, call one service.

Arguments are only ids (a pay_tokens row id), never a PayToken, an amount or a key, so the broker,
Flower and the logs hold nothing sensitive.
"""

from __future__ import annotations

import logging
import time
from typing import Any, NamedTuple

from celery import Task
from sqlalchemy.exc import OperationalError

from core.backoff import retry_countdown
from core.db import statement, transaction
from core.logging import bind_context
from core.queues import CALLBACK_QUEUE, RESOLVE_TASK, SWEEP_QUEUE, SWEEP_TASK
from core.services.outcomes import ResolveKind, ResolveOutcome
from core.services.resolution import record_failed_attempt, resolve_token
from core.services.sweep import run_sweep
from core.settings import Settings, get_settings
from core.sinopac.client import BankClient
from core.sweeplock import exclusive_pass
from metrics import defs as metrics
from workers import app
from workers.bank import client_for, records_with_the_work
from workers.celeryconfig import RESOLVE_HARD_LIMIT, RESOLVE_SOFT_LIMIT, SWEEP_HARD_LIMIT, SWEEP_SOFT_LIMIT
from workers.notify import send_delivery

log = logging.getLogger(__name__)


def _task(name: str, queue: str, soft_limit: float, hard_limit: float, **options: Any) -> Any:
    """Declare a task on its queue with its soft and hard time limits (workers/celeryconfig.py)."""
    return app.task(name=name, queue=queue, soft_time_limit=soft_limit, time_limit=hard_limit, **options)


class _Report(NamedTuple):
    level: int
    message: str  # %-style, with the named fields resolve_pay_token passes
    names_token: bool = False  # the line carries the shortened PayToken as its pay_token field


_PARKED = "its order is settled by the sweep's OrderQuery; replay it with `flask --app webhook tokens replay`"
# How the task reports each conclusion: the one place an outcome becomes a log line. An untrusted
# reply, a dead token and a review are ALERTs, raised once (only the attempt that made the change
# returns them); a transient failure is reported here only once its retries are spent.
_REPORTS: dict[ResolveKind, _Report] = {
    ResolveKind.DEAD: _Report(
        logging.ERROR, "ALERT token %(token)s (%(label)s): dead after %(max_attempts)d failed resolutions "
        "(last: %(error)s); never re-enqueued, " + _PARKED, names_token=True),
    ResolveKind.PROTOCOL_ERROR: _Report(
        logging.ERROR, "ALERT token %(token)s (%(label)s): untrusted bank reply: %(error)s; token parked as "
        "untrusted, " + _PARKED, names_token=True),
    ResolveKind.REVIEW: _Report(logging.ERROR, "ALERT token %(token)s: order needs review: %(error)s"),
    ResolveKind.REJECTED: _Report(logging.WARNING, "token %(token)s rejected by the bank: %(error)s"),
    ResolveKind.TRANSIENT: _Report(
        logging.WARNING, "token %(token)s still unresolved after %(retries)d retries (%(error)s); left for "
        "the sweep"),
    ResolveKind.SETTLED: _Report(logging.INFO, "token %(token)s resolved: %(kind)s"),
    ResolveKind.NOOP: _Report(logging.INFO, "token %(token)s resolved: %(kind)s"),
}


@_task(
    RESOLVE_TASK, CALLBACK_QUEUE, RESOLVE_SOFT_LIMIT, RESOLVE_HARD_LIMIT,
    bind=True,
    max_retries=None,  # bounded by settings.retry_max below, read at run time
)
def resolve_pay_token(self: Task, token_id: Any) -> str:
    """Ask the bank what a stored PayToken paid and settle its order; retry only transient failures."""
    if isinstance(token_id, bool) or not isinstance(token_id, int) or token_id <= 0:
        log.error("resolve_pay_token: rejected argument %r (expected a pay_tokens id)", str(token_id)[:40])
        return "bad_argument"
    settings = get_settings()
    retries = int(self.request.retries or 0)
    outcome = _resolve(settings, token_id)
    extra = {"token_id": token_id, "outcome": outcome.kind.value, "task_id": self.request.id,
             "retries": retries}
    if outcome.kind is ResolveKind.TRANSIENT and retries < settings.retry_max:
        countdown = retry_countdown(retries, base=settings.retry_base, cap=settings.retry_cap)
        metrics.resolve_retry()
        log.info("token %s: transient failure (%s); retry in %.2fs", token_id, outcome.error, countdown,
                 extra=extra)
        raise self.retry(countdown=countdown, max_retries=settings.retry_max)
    report = _REPORTS[outcome.kind]
    fields = {"token": token_id, "label": outcome.token_label or "?", "error": outcome.error,
              "kind": outcome.kind.value, "max_attempts": settings.max_attempts, "retries": retries}
    log.log(report.level, report.message, fields,
            extra={**extra, "pay_token": outcome.token_label} if report.names_token else extra)
    return outcome.kind.value


def _resolve(settings: Settings, token_id: int) -> ResolveOutcome:
    """resolve_token, with a database outage and any surprise made outcomes too."""
    try:
        # A unit of work, not a session: no transaction is open while the bank answers; the bank
        # calls are recorded by the resolution's next transaction, its write (workers/bank.py). The
        # token is read as one statement of its own (core.db.statement: one round trip).
        with records_with_the_work() as unit_of_work:
            outcome = resolve_token(unit_of_work, _shop_client, settings, token_id, reads=statement)
    except OperationalError as exc:
        # The database is unreachable: nothing was changed. Same backoff as a bank outage; after the
        # last retry the stored token is the sweep's (it re-enqueues unresolved tokens).
        return ResolveOutcome(ResolveKind.TRANSIENT, error=f"database unavailable: {type(exc.orig).__name__}")
    except Exception as exc:  # a bug or a surprise: counted like any failure, so no token crash-loops
        return _unexpected(settings, token_id, exc)
    if outcome.received_at is not None:  # committed: the order reached its final state just now
        metrics.settled(time.time() - outcome.received_at.timestamp())
    return outcome


def _shop_client(shop_no: str) -> BankClient:
    """The token's shop's client; from here on the task's log lines carry the shop (the task's context
    is reset after it runs, see workers/signals.py)."""
    bind_context(shop_no=shop_no)
    return client_for(shop_no)


def _unexpected(settings: Settings, token_id: int, exc: Exception) -> ResolveOutcome:
    """Count an unexpected failure on the token: dead when it was the last allowed attempt, else
    transient, retried with the same backoff as an outage."""
    error = f"unexpected {type(exc).__name__}"
    log.exception("resolve of token %s failed unexpectedly", token_id, extra={"token_id": token_id})
    try:
        died = record_failed_attempt(transaction, settings, token_id, error)
    except OperationalError:
        died = False  # the database is down: nothing can be counted now
    return ResolveOutcome(ResolveKind.DEAD if died else ResolveKind.TRANSIENT, error=error)


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


@_task(
    SWEEP_TASK, SWEEP_QUEUE, SWEEP_SOFT_LIMIT, SWEEP_HARD_LIMIT,
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
