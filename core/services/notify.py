"""Pushing order events to the shop (SHOP_WEBHOOK_URL): claim, attempt, record, decide what next.

One attempt is three steps, and no transaction is open during the HTTP call:
  1. `claim`    a conditional UPDATE (state pending, due now) that counts the attempt and pushes
                next_attempt_at past the attempt's own timeout: two tasks for one event (a redelivered
                message, the sweep's relay) never POST it at once, and a worker killed mid-POST leaves
                a claim that runs out, after which the sweep relays the event;
  2. the POST   signed per Standard Webhooks (core/webhook_signing.py), by the caller (workers/notify.py);
  3. `settle`   records the attempt (`record_attempt`: the one place an attempt's result is written)
                and marks the event delivered (any 2xx), due again after a backoff with jitter, or
                failed once the next try would come after SHOP_WEBHOOK_MAX_AGE (one ALERT line).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from core.backoff import retry_countdown
from core.models import DeliveryAttempt, ShopEvent
from core.services.events import event_name
from core.services.updates import rows_updated
from core.settings import Settings

log = logging.getLogger(__name__)

DELIVERY_TIMEOUT = 10.0  # seconds for one POST, connect and answer together
MAX_ANSWER_BYTES = 64 * 1024  # of the shop's answer, read and then dropped
CLAIM_LEASE = timedelta(seconds=DELIVERY_TIMEOUT + 5)  # a claimed attempt's hold on its event
DUE_TOLERANCE = timedelta(seconds=2)  # a retry message may run a little before its stored due time
_MAX_ERROR = 300

Verdict = Literal["delivered", "retry", "failed"]


@dataclass(frozen=True)
class AttemptResult:
    """What one POST came to: the HTTP status (None if there was no answer) or the error."""

    http_status: int | None
    error: str | None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.http_status is not None and 200 <= self.http_status < 300

    def describe(self) -> str:
        return f"HTTP {self.http_status}" if self.http_status is not None else (self.error or "no answer")


@dataclass(frozen=True)
class Claimed:
    """An event this attempt holds: what to send and which attempt it is."""

    event_id: int
    attempt: int
    body: str
    created_at: datetime
    order_no: str

    @property
    def name(self) -> str:
        return event_name(self.event_id)


@dataclass(frozen=True)
class Settled:
    verdict: Verdict
    countdown: float | None = None  # seconds until the next attempt (retry)


def claim(session: Session, event_id: int, *, now: datetime) -> Claimed | None:
    """Take the event for one attempt, or None if it is delivered, failed, unknown or held by another."""
    taken = rows_updated(
        session,
        update(ShopEvent)
        .where(ShopEvent.id == event_id, ShopEvent.state == "pending",
               or_(ShopEvent.next_attempt_at.is_(None), ShopEvent.next_attempt_at <= now + DUE_TOLERANCE))
        .values(attempts=ShopEvent.attempts + 1, next_attempt_at=now + CLAIM_LEASE)
    )
    if not taken:
        return None
    row = session.execute(
        select(ShopEvent.attempts, ShopEvent.body, ShopEvent.created_at, ShopEvent.order_no)
        .where(ShopEvent.id == event_id)
    ).one()
    return Claimed(event_id, row.attempts, row.body, row.created_at, row.order_no)


def record_attempt(
    session: Session, event_id: int, attempt: int, at: datetime, result: AttemptResult
) -> None:
    """The one place a delivery attempt's result is recorded (count it here too)."""
    session.add(DeliveryAttempt(event_id=event_id, attempt=attempt, at=at, duration_ms=result.duration_ms,
                                http_status=result.http_status,
                                error=result.error[:_MAX_ERROR] if result.error else None))


def settle(
    session: Session,
    settings: Settings,
    claimed: Claimed,
    result: AttemptResult,
    *,
    started: datetime,
    now: datetime,
    rand: Callable[[float, float], float] | None = None,
) -> Settled:
    """Record the attempt and decide: delivered, retry after a backoff, or failed (given up)."""
    record_attempt(session, claimed.event_id, claimed.attempt, started, result)
    where = (ShopEvent.id == claimed.event_id, ShopEvent.state == "pending")
    if result.delivered:
        session.execute(update(ShopEvent).where(*where)
                        .values(state="delivered", delivered_at=now, next_attempt_at=None, last_error=None)
                        .execution_options(synchronize_session=False))
        return Settled("delivered")
    error = f"attempt {claimed.attempt}: {result.describe()}"[:_MAX_ERROR]
    kwargs = {"rand": rand} if rand is not None else {}
    countdown = retry_countdown(claimed.attempt - 1, base=settings.webhook_retry_base,
                                cap=settings.webhook_retry_cap, **kwargs)
    due = now + timedelta(seconds=countdown)
    if due > claimed.created_at + timedelta(seconds=settings.webhook_max_age):
        session.execute(update(ShopEvent).where(*where)
                        .values(state="failed", next_attempt_at=None, last_error=error)
                        .execution_options(synchronize_session=False))
        log.error("ALERT event %s (order %s): not delivered to the shop after %d attempts over %s; "
                  "last: %s; marked failed, redeliver with `flask --app webhook events redeliver %s`",
                  claimed.name, claimed.order_no, claimed.attempt, now - claimed.created_at,
                  result.describe(), claimed.name,
                  extra={"event_id": claimed.name, "order_no": claimed.order_no})
        return Settled("failed")
    session.execute(update(ShopEvent).where(*where)
                    .values(next_attempt_at=due, last_error=error)
                    .execution_options(synchronize_session=False))
    return Settled("retry", countdown)


def due_events(session: Session, *, now: datetime, grace: float, limit: int) -> list[int]:
    """The outbox relay's work: pending events due `grace` seconds ago and not relayed since.

    An event whose first message was never sent (broker down), whose worker died mid-POST (its claim
    ran out), or whose next retry is too far off for a broker countdown, is due here.
    """
    cutoff = now - timedelta(seconds=grace)
    stmt = (
        select(ShopEvent.id)
        .where(ShopEvent.state == "pending", ShopEvent.next_attempt_at <= cutoff,
               or_(ShopEvent.last_enqueued_at.is_(None), ShopEvent.last_enqueued_at <= cutoff))
        .order_by(ShopEvent.next_attempt_at)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def mark_relayed(session: Session, event_ids: list[int], *, now: datetime) -> None:
    if event_ids:
        session.execute(update(ShopEvent).where(ShopEvent.id.in_(event_ids)).values(last_enqueued_at=now)
                        .execution_options(synchronize_session=False))
