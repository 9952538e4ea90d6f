"""The one fact the public return page may learn about a PayToken: a status word."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Order, PayToken

FINAL_WORDS = frozenset({"paid", "failed", "expired", "rejected"})


def token_status(session: Session, pay_token: str) -> str | None:
    """None for an unknown token; else the order's status, "rejected", or "pending" until resolved.

    An untrusted token (the bank's reply failed verification) is linked to no order until an operator
    replays it, so the customer is told the shop is reviewing it rather than "waiting" forever.
    """
    row = session.execute(
        select(PayToken.state, Order.status)
        .select_from(PayToken)
        .outerjoin(Order, (Order.order_no == PayToken.order_no) & (Order.shop_no == PayToken.shop_no))
        .where(PayToken.pay_token == pay_token)
    ).first()
    if row is None:
        return None
    state, order_status = row
    if order_status is not None:
        return str(order_status)
    if state == "rejected":
        return "rejected"
    if state == "untrusted":
        return "needs_review"
    return "pending"
