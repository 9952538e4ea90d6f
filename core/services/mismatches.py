"""What settling reads of an order, and the one check of a bank reply against it.

Both bank replies that can pay an order (OrderPayQuery's TSResultContent and an OrderQuery row) are
compared with the stored order by `mismatches`; each adds only what is peculiar to its reply.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session

from core.driver import prebuilt
from core.models import Order
from core.services.updates import run
from core.sinopac import paystatus
from core.sinopac.types import OrderQueryRow, PayQueryResult, TSResult
from core.states import PAID_LATE, OrderStatus


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """What settling reads of an order, fresh from its row (no ORM object: an entity load with
    populate_existing and instrumented attribute reads was a tenth of a worker's CPU per settlement)."""

    id: int
    shop_no: str
    order_no: str
    amount: int
    currency: str
    pay_type: str
    status: str
    ts_no: str | None
    expires_at: datetime | None
    check_attempts: int

    def late(self) -> str | None:
        """'paid after expiry' / 'paid after failure' when a verified payment meets a closed order."""
        return PAID_LATE.get(OrderStatus(self.status))


_ORDERS = cast(Table, Order.__table__)
_FACTS = select(*(_ORDERS.c[name] for name in OrderFacts.__dataclass_fields__))
# Built once with bind parameters (their cache keys are memoized): by OrderNo alone, or within a shop.
_ORDER_FACTS = {with_shop: prebuilt(_FACTS.where(Order.bound_key(with_shop))) for with_shop in (False, True)}
_TS_NO_TAKEN = prebuilt(select(_ORDERS.c.order_no).where(_ORDERS.c.ts_no == bindparam("k_ts_no"),
                                                         _ORDERS.c.id != bindparam("k_id")))


def order_facts(session: Session, order_no: str, shop_no: str | None = None) -> OrderFacts | None:
    # One Core SELECT, read now: another transaction may have moved the order a moment ago.
    keys = {"k_order_no": order_no, "k_shop_no": shop_no}
    row = run(session, _ORDER_FACTS[shop_no is not None], keys).first()
    return OrderFacts(*row) if row is not None else None


@dataclass(frozen=True, slots=True)
class Reported:
    """What a bank reply says of the payment, to be compared with the stored order."""

    ts_no: str
    pay_type: str
    currency: object  # CurrencyID as the reply has it (None or "": not given)
    amount: int | None = None  # None: not a payment, its amount is not compared


def mismatches(session: Session, order: OrderFacts, said: Reported) -> list[str]:
    """Every way the reply disagrees with the stored order (empty: it agrees)."""
    reasons = []
    if order.ts_no and said.ts_no and said.ts_no != order.ts_no:
        reasons.append(f"TSNo {said.ts_no} differs from the stored {order.ts_no}")
    # orders.ts_no is unique: when this order already holds the TSNo no other order can (no SELECT).
    if said.ts_no and said.ts_no != order.ts_no:
        other = _ts_no_taken(session, said.ts_no, order)
        if other:
            reasons.append(f"TSNo {said.ts_no} already belongs to order {other}")
    if said.pay_type and said.pay_type != order.pay_type:
        reasons.append(f"PayType {said.pay_type} differs from the stored {order.pay_type}")
    if said.currency not in (None, "") and said.currency != order.currency:
        reasons.append(f"currency {said.currency} differs from the stored {order.currency}")
    if said.amount is not None and said.amount != order.amount:
        reasons.append(f"amount {said.amount} differs from the stored {order.amount}")
    return reasons


def reply_mismatches(result: PayQueryResult, ts: TSResult, shop: str, pay_token: str | None) -> list[str]:
    """What only an OrderPayQuery reply can get wrong: its status, shops, token and APType."""
    reasons: list[str] = []
    if result.status != "S":
        reasons.append(f"reply Status {result.status or '(empty)'}")
    if result.shop_no != shop:
        reasons.append(f"reply ShopNo {result.shop_no or '(empty)'} is not ours (shop {shop})")
    if ts.shop_no != shop:
        reasons.append(f"TSResultContent ShopNo {ts.shop_no or '(empty)'} is not ours (shop {shop})")
    if result.pay_token and result.pay_token != pay_token:
        reasons.append("reply PayToken differs from the one queried")
    if ts.ap_type != "PayOut":
        reasons.append(f"APType {ts.ap_type or '(empty)'} is not PayOut")
    return reasons


def row_mismatches(session: Session, order: OrderFacts, row: OrderQueryRow, shop: str) -> list[str]:
    """Every way a paid row disagrees with the stored order, its shop and its PayType."""
    said = Reported(row.ts_no, row.pay_type, row.raw.get("CurrencyID"), row.amount)
    reasons = mismatches(session, order, said)
    row_shop = row.raw.get("ShopNo")
    if row_shop not in (None, "") and row_shop != shop:
        reasons.append(f"row ShopNo {row_shop} is not ours (shop {shop})")
    if row.pay_status[1:2] != order.pay_type:
        reasons.append(f"PayStatus {row.pay_status} does not match PayType {order.pay_type}")
    return reasons


def _ts_no_taken(session: Session, ts_no: str, order: OrderFacts) -> str | None:
    """The other order already holding this TSNo, if any: one bank transaction pays one order."""
    return run(session, _TS_NO_TAKEN, {"k_ts_no": ts_no, "k_id": order.id}).scalar()


@dataclass(frozen=True)
class Confirmation:
    """The bank's OrderQuery row for the order an OrderPayQuery reply says was paid (None: not listed).

    An OrderPayQuery reply's Sign covers only its top-level scalars; TSResultContent, which names the
    order and the amount, is protected by AES-CBC alone, which has no integrity. So a paid result is
    applied only when the bank's own OrderQuery for that OrderNo agrees (QPAY_CONFIRM_PAYMENTS).
    """

    row: OrderQueryRow | None

    def disagreement(self, ts_no: str, amount: int) -> str | None:
        row = self.row
        if row is None:
            return "not confirmed: OrderQuery does not list the order"
        found = []
        if row.pay_status not in paystatus.PAID_CODES:
            found.append(f"OrderQuery reports PayStatus {row.pay_status or '(empty)'}, not paid")
        if row.ts_no != ts_no:
            found.append(f"OrderQuery TSNo {row.ts_no or '(empty)'} differs from the reply's "
                         f"{ts_no or '(empty)'}")
        if row.amount != amount:
            found.append(f"OrderQuery amount {row.amount} differs from the reply's {amount}")
        return "not confirmed: " + "; ".join(found) if found else None
