"""What a PayToken tells: a status word (the public endpoint), and which order it paid (its holder's page)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Order, PayToken

FINAL_WORDS = frozenset({"paid", "failed", "expired", "rejected"})


def token_status(session: Session, pay_token: str) -> str | None:
    """None for an unknown token; else the order's status, "rejected", or "pending" until resolved.

    An untrusted token (the bank's reply failed verification) or a dead one (every allowed resolution
    failed) is linked to no order until an operator replays it, so the customer is told the shop is
    reviewing it rather than "waiting" forever.
    """
    found = token_progress(session, pay_token)
    return None if found is None else found[0]


def token_progress(session: Session, pay_token: str) -> tuple[str, str | None, str] | None:
    """(status word as token_status says it, the order number once the token is linked to an order,
    the token's shop)."""
    row = session.execute(
        select(PayToken.state, Order.status, Order.order_no, PayToken.shop_no)
        .select_from(PayToken)
        .outerjoin(Order, (Order.order_no == PayToken.order_no) & (Order.shop_no == PayToken.shop_no))
        .where(PayToken.pay_token == pay_token)
    ).first()
    if row is None:
        return None
    state, order_status, order_no, shop_no = row
    if order_status is not None:
        return str(order_status), str(order_no), shop_no
    if state == "rejected":
        return "rejected", None, shop_no
    if state in ("untrusted", "dead"):
        return "needs_review", None, shop_no
    return "pending", None, shop_no
