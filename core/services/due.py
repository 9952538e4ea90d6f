"""Due work for the sweep, read through the partial indexes so the cost follows what is due.

`ix_pay_tokens_unresolved` holds only tokens in state received and `ix_orders_due_check` only pending
orders: resolved tokens and settled orders, however many, are never scanned.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from core.models import Order, PayToken

DEFAULT_LEASE = timedelta(minutes=5)


def _as_delta(value: timedelta | float) -> timedelta:
    return value if isinstance(value, timedelta) else timedelta(seconds=float(value))


def next_check_at(attempts: int, now: datetime, schedule: Sequence[float]) -> datetime:
    """When to look at a pending order again: step `attempts` of the schedule, then its last step."""
    if not schedule:
        raise ValueError("check schedule is empty")
    step = schedule[min(max(attempts, 0), len(schedule) - 1)]
    return now + timedelta(seconds=step)


def due_tokens(
    session: Session, *, now: datetime, grace: timedelta | float, limit: int, shop_no: str | None = None
) -> list[int]:
    """Ids of tokens still unresolved `grace` after they were last received and last enqueued.

    These are the outbox's stragglers: the broker was down, the worker died, or retries ran out.
    Re-enqueueing is safe because resolution is idempotent. Untrusted tokens (their bank reply failed
    verification) are not due: a blind retry would ask the same broken channel again; an operator
    replays them, and the targeted OrderQuery settles their orders meanwhile.
    """
    cutoff = now - _as_delta(grace)
    stmt = (
        select(PayToken.id)
        .where(
            PayToken.state == "received",
            PayToken.last_received_at <= cutoff,
            or_(PayToken.last_enqueued_at.is_(None), PayToken.last_enqueued_at <= cutoff),
        )
        .order_by(PayToken.last_received_at)
        .limit(limit)
    )
    if shop_no is not None:
        stmt = stmt.where(PayToken.shop_no == shop_no)
    return list(session.scalars(stmt))


def claim_due_orders(
    session: Session,
    *,
    now: datetime,
    limit: int,
    lease: timedelta | float = DEFAULT_LEASE,
    shop_no: str | None = None,
) -> list[str]:
    """Claim pending orders due for a check: lock them (SKIP LOCKED on PostgreSQL) and push their
    next_check_at out by `lease`; returns their OrderNos, oldest due first.

    Commit the claim before calling the bank: a second sweep running at the same time skips the
    locked rows and, after the commit, no longer sees them as due, so no row lock is held across a
    bank call. settle_from_query_row (or schedule_next_check) sets the real next check afterwards;
    if the sweep dies, the lease expires and the order is due again. Two Core statements, whatever
    the batch size (no ORM objects: the sweep needs only the numbers).
    """
    stmt = (
        select(Order.id, Order.order_no)
        .where(Order.status == "pending", Order.next_check_at <= now)
        .order_by(Order.next_check_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if shop_no is not None:
        stmt = stmt.where(Order.shop_no == shop_no)
    rows = session.execute(stmt).all()
    if rows:
        session.execute(
            update(Order)
            .where(Order.id.in_([r.id for r in rows]), Order.status == "pending")
            .values(next_check_at=now + _as_delta(lease))
            .execution_options(synchronize_session=False)
        )
    return [r.order_no for r in rows]
