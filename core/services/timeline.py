"""What happened to one order, read for the ops CLI's `orders show`: its events, the bank calls that
named it or its tokens, and the tokens themselves (the CLI lays them out as one timeline)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.logging import short_token
from core.models import BankCall, Order, OrderEvent, PayToken


@dataclass(frozen=True)
class OrderRecord:
    order: Order
    events: list[OrderEvent]
    calls: list[BankCall]
    tokens: list[PayToken]


def order_record(session: Session, order: Order) -> OrderRecord:
    """Everything stored about `order`. Its tokens: those resolved to it, and the one it was paid with
    (which may have been recorded before it named the order); bank calls are keyed by OrderNo or by a
    shortened PayToken, and older ones carry no shop."""
    tokens = list(session.scalars(select(PayToken).where(PayToken.order_no == order.order_no,
                                                         PayToken.shop_no == order.shop_no)))
    if order.pay_token and order.pay_token not in {t.pay_token for t in tokens}:
        tokens += list(session.scalars(select(PayToken).where(PayToken.pay_token == order.pay_token)))
    keys = [order.order_no, *(short_token(t.pay_token) for t in tokens)]
    events = list(session.scalars(select(OrderEvent).where(OrderEvent.order_no == order.order_no,
                                                           OrderEvent.shop_no == order.shop_no)))
    calls = list(session.scalars(select(BankCall).where(
        BankCall.key.in_(keys), (BankCall.shop_no == order.shop_no) | BankCall.shop_no.is_(None))))
    return OrderRecord(order, events, calls, tokens)
