"""Finding the one order an operator names by OrderNo (and, when shops share it, by ShopNo)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Order
from core.services.orders import get_order


class NoSuchOrder(LookupError):
    """No order has this OrderNo (in this shop, when one was named)."""

    def __init__(self, order_no: str, shop_no: str | None) -> None:
        super().__init__(f"order {order_no} not found" + (f" in shop {shop_no}" if shop_no else ""))


class AmbiguousOrder(LookupError):
    """Several shops use this OrderNo and none was named."""

    def __init__(self, order_no: str, shops: list[str]) -> None:
        super().__init__(f"order {order_no} exists in several shops ({', '.join(shops)})")
        self.shops = shops


def find_order(session: Session, order_no: str, shop_no: str | None = None) -> Order:
    """The order named by OrderNo; with several shops sharing the OrderNo, `shop_no` must decide."""
    shops = list(session.scalars(select(Order.shop_no).where(Order.key(order_no, shop_no))
                                 .order_by(Order.id)))
    if len(shops) > 1:
        raise AmbiguousOrder(order_no, shops)
    order = get_order(session, order_no, shops[0]) if shops else None
    if order is None:
        raise NoSuchOrder(order_no, shop_no)
    return order
