"""The order as the shop sees it: one JSON shape for the orders API and the order events.

Shared so that an event's `data.order` is exactly what `GET /api/orders/<no>` shows at that moment
(minus its history), and a change to one changes the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.checkout import checkout_url
from core.models import Order
from core.settings import Settings


@dataclass(frozen=True, slots=True)
class OrderSnapshot:
    """An order's row as a statement returned it (`UPDATE ... RETURNING *DETAIL_COLUMNS`): the shop's
    event body is built from the row a transition just wrote, without loading an ORM entity."""

    order_no: str
    shop_no: str
    status: str
    amount: int
    currency: str
    pay_type: str
    ts_no: str | None
    expires_at: datetime | None
    atm_pay_no: str | None
    card_pay_url: str | None
    product_name: str | None
    status_reason: str | None
    created_at: datetime | None
    updated_at: datetime | None
    paid_at: datetime | None

    @classmethod
    def of(cls, row: Sequence[Any]) -> OrderSnapshot:
        """From a row of exactly these columns, in this order (DETAIL_COLUMNS)."""
        values: tuple[Any, ...] = tuple(row)
        return cls(*values)


# The columns order_detail() reads, in OrderSnapshot's order (the table's: for Core statements).
DETAIL_COLUMNS = tuple(Order.__table__.c[name] for name in OrderSnapshot.__dataclass_fields__)
# What the shop's JSON is built from: an Order entity, or an OrderSnapshot of its row.
OrderView = Order | OrderSnapshot


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def twd(amount: int) -> int | float:
    """Stored ×100 amounts as the API shows them: whole dollars as an int, else a float."""
    return amount // 100 if amount % 100 == 0 else amount / 100


def order_summary(order: OrderView, settings: Settings) -> dict[str, Any]:
    """What `POST /api/orders` answers: identity, amount, how to pay (the bank's details and our hosted
    checkout link, None without CHECKOUT_SECRET)."""
    body: dict[str, Any] = {
        "order_no": order.order_no,
        "shop_no": order.shop_no,
        "status": order.status,
        "amount": twd(order.amount),
        "currency": order.currency,
        "pay_type": order.pay_type,
        "ts_no": order.ts_no,
        "expires_at": iso(order.expires_at),
    }
    if order.pay_type == "A":
        body["atm_pay_no"] = order.atm_pay_no
    else:
        body["card_pay_url"] = order.card_pay_url
    body["checkout_url"] = checkout_url(settings, order.order_no, order.shop_no)
    return body


def order_detail(order: OrderView, settings: Settings) -> dict[str, Any]:
    """What `GET /api/orders/<no>` answers, without its `events` (the event body's `data.order`)."""
    body = order_summary(order, settings)
    body.update(
        product_name=order.product_name,
        status_reason=order.status_reason,
        created_at=iso(order.created_at),
        updated_at=iso(order.updated_at),
        paid_at=iso(order.paid_at),
    )
    return body
