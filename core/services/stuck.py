"""Work that is not moving, for the ops CLI's `orders stuck`: pending orders and unresolved tokens
older than a cutoff, parked tokens (untrusted, dead: any age, they wait for an operator) and orders
needing review."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import Order, PayToken
from core.states import OrderStatus, TokenState


@dataclass(frozen=True)
class StuckWork:
    pending: list[Order]  # oldest first
    unresolved: list[PayToken]  # received, not resolved yet; oldest first
    untrusted: list[PayToken]
    dead: list[PayToken]
    review: list[Order]


def stuck_work(session: Session, cutoff: datetime) -> StuckWork:
    """What has waited since before `cutoff` (parked tokens and reviews: whatever their age)."""
    pending = session.scalars(select(Order).where(Order.status == OrderStatus.PENDING.value,
                                                  Order.created_at <= cutoff).order_by(Order.created_at))
    unresolved = session.scalars(
        select(PayToken).where(PayToken.state == TokenState.RECEIVED.value,
                               PayToken.first_received_at <= cutoff).order_by(PayToken.first_received_at))
    review = session.scalars(select(Order).where(Order.status == OrderStatus.NEEDS_REVIEW.value)
                             .order_by(Order.id))
    return StuckWork(list(pending), list(unresolved), parked_tokens(session, TokenState.UNTRUSTED),
                     parked_tokens(session, TokenState.DEAD), list(review))


def parked_tokens(session: Session, state: TokenState) -> list[PayToken]:
    """The tokens in `state`, oldest first."""
    stmt = select(PayToken).where(PayToken.state == state.value).order_by(PayToken.first_received_at)
    return list(session.scalars(stmt))


def untrusted_count(session: Session) -> int:
    """How many tokens wait as untrusted: one may belong to an order that looks unpaid."""
    stmt = select(func.count()).select_from(PayToken).where(PayToken.state == TokenState.UNTRUSTED.value)
    return int(session.scalar(stmt) or 0)
