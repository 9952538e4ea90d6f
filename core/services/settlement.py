"""Order transitions and the settlement rules: only the bank's verified word moves an order.

Every change is one conditional UPDATE (`... WHERE status = <current>`) whose row count says whether
this call made it, plus one OrderEvent and the shop's ShopEvent (the notification outbox). Two
settlers racing on one order (a callback and a sweep, or twenty workers) therefore produce exactly one
transition and one event; the losers see a no-op.
Mismatches never pay an order: they park it in needs_review with the reason, logged loudly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from core.models import Order, OrderEvent
from core.services.due import next_check_at
from core.services.events import record_event
from core.services.order_json import DETAIL_COLUMNS, OrderSnapshot
from core.settings import Settings
from core.sinopac import paystatus
from core.sinopac.timefmt import from_bank_minute
from core.sinopac.types import OrderQueryRow, PayQueryResult
from core.states import PAID_LATE, IllegalTransition, OrderStatus, Source, check_move

log = logging.getLogger(__name__)

SettleKind = Literal["paid", "failed", "expired", "review", "pending", "noop", "conflict", "unknown_order"]
_MAX_TRIES = 3
# An unpaid card order expires this long after its link does: a customer who opened the link in its
# last minute may still be authorising (3-D Secure), and a capture the bank reports paid in the
# meantime settles the order paid instead. Ours, not the bank's: the bank documents no such margin.
CARD_CAPTURE_GRACE = timedelta(minutes=5)


class OrderNotFound(LookupError):
    """transition() was asked to move an order that does not exist."""

    def __init__(self, order_no: str) -> None:
        super().__init__(f"order {order_no} does not exist")
        self.order_no = order_no


@dataclass(frozen=True)
class SettleOutcome:
    """What a settlement concluded. `changed` is True only if this call moved the order."""

    kind: SettleKind
    order_no: str | None
    changed: bool = False
    reason: str | None = None


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


def _late(order: OrderFacts) -> str | None:
    """'paid after expiry' / 'paid after failure' when a verified payment meets a closed order."""
    return PAID_LATE.get(OrderStatus(order.status))


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


def transition(
    session: Session,
    order_no: str,
    target: OrderStatus | str,
    *,
    source: Source | str,
    ts_no: str | None = None,
    amount: int | None = None,
    detail: str | None = None,
    pay_token: str | None = None,
    paid_at: datetime | None = None,
    now: datetime | None = None,
    shop_no: str | None = None,
) -> bool:
    """Move an order to `target`; True only if this call made the change.

    `shop_no` names the order's shop (OrderNos are unique per shop); None: the OrderNo alone.

    Repeating the current state is a no-op (False); an illegal move raises IllegalTransition. If a
    concurrent writer changes the status between our read and our UPDATE, the UPDATE matches no row
    and we re-read: the same target is a no-op, anything else is judged again from the new state.
    """
    target = OrderStatus(target)
    src = Source(source)
    at = _now(now)
    for _ in range(_MAX_TRIES):
        row = session.execute(
            select(Order.status, Order.ts_no, Order.shop_no).where(Order.key(order_no, shop_no))
        ).first()
        if row is None:
            raise OrderNotFound(order_no)
        current = OrderStatus(row.status)
        if not check_move(order_no, current, target, src):
            return False
        values: dict[str, object] = {"status": target.value, "status_reason": detail, "updated_at": at}
        if target is OrderStatus.PAID:
            values["paid_at"] = paid_at or at
            if ts_no and row.ts_no is None:
                values["ts_no"] = ts_no
            if pay_token:
                values["pay_token"] = pay_token
        if target is not OrderStatus.PENDING:
            values["next_check_at"] = None
        result = session.execute(
            update(Order)
            .where(Order.key(order_no, row.shop_no), Order.status == current.value)
            .values(**values)
            .returning(*DETAIL_COLUMNS)  # the order as it now stands, for the shop's event: no reload
            .execution_options(synchronize_session=False)
        )
        moved = result.first()
        if moved is not None:
            # A Core INSERT: no ORM unit of work for a row nobody reads back here.
            session.execute(
                insert(OrderEvent).values(
                    shop_no=row.shop_no,
                    order_no=order_no,
                    from_status=current.value,
                    to_status=target.value,
                    source=src.value,
                    ts_no=ts_no,
                    amount=amount,
                    detail=detail,
                    at=at,
                )
            )
            _expire_cached(session, order_no, row.shop_no)
            # The shop's notification, in this same transaction (core/services/events.py).
            record_event(session, OrderSnapshot.of(moved), current.value, target.value, src.value, at)
            return True
    raise RuntimeError(f"order {order_no}: status kept changing under us ({_MAX_TRIES} tries)")


def _expire_cached(session: Session, order_no: str, shop_no: str | None = None) -> None:
    """Bulk UPDATEs bypass the identity map: make a loaded Order re-read its row."""
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Order) and obj.order_no == order_no and shop_no in (None, obj.shop_no):
            session.expire(obj)


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


_ORDER_FACTS = select(Order.id, Order.shop_no, Order.order_no, Order.amount, Order.currency, Order.pay_type,
                      Order.status, Order.ts_no, Order.expires_at, Order.check_attempts)


def _order_facts(session: Session, order_no: str, shop_no: str | None = None) -> OrderFacts | None:
    # One Core SELECT, read now: another transaction may have moved the order a moment ago.
    row = session.execute(_ORDER_FACTS.where(Order.key(order_no, shop_no))).first()
    return OrderFacts(**row._mapping) if row is not None else None


def _ts_no_taken(session: Session, ts_no: str, order: OrderFacts) -> str | None:
    """The other order already holding this TSNo, if any: one bank transaction pays one order."""
    return session.scalars(
        select(Order.order_no).where(Order.ts_no == ts_no, Order.id != order.id)
    ).first()


def _common_mismatches(
    session: Session, order: OrderFacts, *, ts_no: str, pay_type: str, currency: object
) -> list[str]:
    reasons = []
    if order.ts_no and ts_no and ts_no != order.ts_no:
        reasons.append(f"TSNo {ts_no} differs from the stored {order.ts_no}")
    # orders.ts_no is unique: when this order already holds the TSNo no other order can (no SELECT).
    if ts_no and ts_no != order.ts_no:
        other = _ts_no_taken(session, ts_no, order)
        if other:
            reasons.append(f"TSNo {ts_no} already belongs to order {other}")
    if pay_type and pay_type != order.pay_type:
        reasons.append(f"PayType {pay_type} differs from the stored {order.pay_type}")
    if currency not in (None, "") and currency != order.currency:
        reasons.append(f"currency {currency} differs from the stored {order.currency}")
    return reasons


def _apply(
    session: Session,
    order: OrderFacts,
    target: OrderStatus,
    *,
    source: Source | str,
    ts_no: str | None,
    amount: int | None,
    reason: str | None,
    pay_token: str | None = None,
    paid_at: datetime | None = None,
    now: datetime,
    paid: bool = False,
) -> SettleOutcome:
    """Run one transition and turn races and final states into outcomes instead of exceptions.

    `paid`: the bank verified that money was taken. Only then may a closed (expired, failed) order
    move, and only to needs_review, with the reason why (`paid after expiry` / `paid after failure`).
    """
    kind: SettleKind = "review" if target is OrderStatus.NEEDS_REVIEW else target.value  # type: ignore[assignment]
    extra = {"order_no": order.order_no, "shop_no": order.shop_no, "ts_no": ts_no, "source": str(source)}
    if not paid and target is OrderStatus.NEEDS_REVIEW and _late(order):
        return SettleOutcome("noop", order.order_no, False, f"order is {order.status}")
    try:
        changed = transition(
            session,
            order.order_no,
            target,
            source=source,
            ts_no=ts_no,
            amount=amount,
            detail=reason,
            pay_token=pay_token,
            paid_at=paid_at,
            now=now,
            shop_no=order.shop_no,
        )
    except IllegalTransition as exc:
        late = PAID_LATE.get(OrderStatus(exc.current)) if paid and target is OrderStatus.PAID else None
        if late:  # closed between our read and our update: the money still needs an operator
            return _apply(session, order, OrderStatus.NEEDS_REVIEW, source=source, ts_no=ts_no, amount=amount,
                          reason=late, pay_token=pay_token, paid_at=paid_at, now=now, paid=True)
        # The order already left pending (final, or parked for an operator). A bank word that
        # contradicts that is money we may owe or miss: say so loudly, change nothing.
        if target in (OrderStatus.PAID, OrderStatus.NEEDS_REVIEW):
            level = logging.WARNING if exc.current == OrderStatus.NEEDS_REVIEW else logging.ERROR
            log.log(
                level,
                "order %s is %s but the bank's word now means %s (%s); not changed",
                order.order_no,
                exc.current,
                target.value,
                reason or "all fields match",
                extra={**extra, "status": exc.current},
            )
            return SettleOutcome("conflict", order.order_no, False, f"order is {exc.current}")
        return SettleOutcome("noop", order.order_no, False, f"order is {exc.current}")
    if not changed:
        return SettleOutcome("noop", order.order_no, False, reason)
    if target is OrderStatus.NEEDS_REVIEW:
        log.error("order %s needs review: %s", order.order_no, reason, extra={**extra, "reason": reason})
    else:
        log.info("order %s -> %s", order.order_no, target.value, extra=extra)
    return SettleOutcome(kind, order.order_no, True, reason)


def _bank_time(value: str) -> datetime | None:
    try:
        return from_bank_minute(value)
    except ValueError:
        return None


def settle_from_pay_result(
    session: Session,
    settings: Settings,
    result: PayQueryResult,
    *,
    source: Source | str,
    pay_token: str,
    now: datetime | None = None,
    shop_no: str | None = None,
    confirmation: Confirmation | None = None,
) -> SettleOutcome:
    """Apply an OrderPayQuery reply (PROTOCOL.md §9.5) to the order it names, of shop `shop_no` (the
    shop whose keys asked; default: settings' shop).

    `confirmation` (the bank's OrderQuery row for that order, fetched by the caller outside any
    transaction) must agree with a paid result, or the order goes to needs_review. None: unchecked
    (QPAY_CONFIRM_PAYMENTS=0). A verified payment for an expired or failed order -> needs_review.

    paid: top-level and TSResultContent Status S, APType PayOut, both ShopNo ours, the order exists,
    amount, currency, PayType and TSNo agree with what we stored. A card payment with inner Status F
    is failed. Anything else about a known order is needs_review; an unknown OrderNo is unknown_order
    (the caller rejects the token: there is no order to review).
    """
    at = _now(now)
    ts = result.result
    if ts is None:
        log.error("PayQuery reply without TSResultContent", extra={"reason": "no TSResultContent"})
        return SettleOutcome("unknown_order", None, False, "reply has no TSResultContent")
    shop = shop_no or settings.shop_no
    order = _order_facts(session, ts.order_no, shop)
    if order is None:
        reason = f"OrderNo {ts.order_no} is not ours (no such order of shop {shop})"
        log.error("PayQuery names an unknown order %s of shop %s", ts.order_no, shop,
                  extra={"order_no": ts.order_no, "shop_no": shop})
        return SettleOutcome("unknown_order", ts.order_no, False, reason)

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
    reasons += _common_mismatches(
        session, order, ts_no=ts.ts_no, pay_type=ts.pay_type, currency=ts.raw.get("CurrencyID")
    )

    common = {"source": source, "ts_no": ts.ts_no or None, "pay_token": pay_token, "now": at}
    if ts.status == "S":
        if ts.amount != order.amount:
            reasons.append(f"amount {ts.amount} differs from the stored {order.amount}")
        if not ts.ts_no:
            reasons.append("no TSNo in a successful payment")
        unconfirmed = confirmation.disagreement(ts.ts_no, ts.amount) if confirmation is not None else None
        if unconfirmed:
            reasons.insert(0, unconfirmed)
        elif late := _late(order):
            reasons.insert(0, late)
        if reasons:
            # Money the bank verified (if confirmed): a closed order may move, to needs_review only.
            return _apply(session, order, OrderStatus.NEEDS_REVIEW, amount=ts.amount,
                          reason="; ".join(reasons), paid=not unconfirmed, **common)  # type: ignore[arg-type]
        return _apply(session, order, OrderStatus.PAID, amount=ts.amount, reason=None,
                      paid_at=_bank_time(ts.pay_date) or at, paid=True, **common)  # type: ignore[arg-type]
    if ts.status == "F" and order.pay_type == "C" and not reasons:
        detail = f"card payment failed: {ts.description}".strip().rstrip(":")
        return _apply(session, order, OrderStatus.FAILED, amount=ts.amount or None, reason=detail,
                      **common)  # type: ignore[arg-type]
    reasons.append(f"payment Status {ts.status or '(empty)'} for PayType {order.pay_type}")
    return _apply(session, order, OrderStatus.NEEDS_REVIEW, amount=ts.amount or None,
                  reason="; ".join(reasons), **common)  # type: ignore[arg-type]


def schedule_next_check(
    session: Session,
    settings: Settings,
    order_no: str,
    *,
    now: datetime,
    not_after: datetime | None = None,
    shop_no: str | None = None,
    attempts: int | None = None,
) -> bool:
    """Push a still-pending order's next check out along settings.check_schedule (attempts += 1).

    `not_after` caps it: an unpaid order is looked at again when it may expire, not a backoff step
    (up to hours) later. `attempts`: the order's check_attempts when the caller has just read it in
    this transaction (saves a SELECT; the UPDATE still counts in SQL and only a pending order moves).
    """
    if attempts is None:
        attempts = session.scalar(
            select(Order.check_attempts).where(Order.key(order_no, shop_no), Order.status == "pending")
        )
        if attempts is None:
            return False
    when = next_check_at(attempts + 1, now, settings.check_schedule)
    if not_after is not None and now < not_after < when:
        when = not_after
    result = session.execute(
        update(Order)
        .where(Order.key(order_no, shop_no), Order.status == "pending")
        .values(
            check_attempts=Order.check_attempts + 1,
            next_check_at=when,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    _expire_cached(session, order_no, shop_no)
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _expiry(order: OrderFacts, row: OrderQueryRow, grace: timedelta = timedelta(0)) -> datetime | None:
    """The later of the bank's ExpireDate minute and our stored expiry, plus `grace`; None if neither.

    Expiring on the later one means never early, whichever clock or field is off.
    """
    bank = _bank_time(row.expire_date)
    limits = [t for t in (bank + timedelta(minutes=1) if bank else None, order.expires_at) if t]
    return max(limits) + grace if limits else None


def _expiry_passed(
    order: OrderFacts, row: OrderQueryRow, now: datetime, grace: timedelta = timedelta(0)
) -> bool:
    limit = _expiry(order, row, grace)
    return limit is not None and now >= limit


def settle_from_query_row(
    session: Session,
    settings: Settings,
    row: OrderQueryRow,
    *,
    source: Source | str,
    now: datetime | None = None,
    shop_no: str | None = None,
) -> SettleOutcome:
    """Apply one OrderQuery row (PROTOCOL.md §9.4) to a pending order of shop `shop_no` (the shop whose
    keys asked; default: settings' shop).

    Paid codes with a matching amount -> paid (a mismatch -> needs_review), even past expiry: a late
    payment is still a payment. An ATM order past expiry and unpaid, or the ATM overdue code ->
    expired; a card order the bank reports unpaid or link-expired (1C200, 1C600) -> expired only once
    our expiry plus CARD_CAPTURE_GRACE has passed; a declined card -> failed. Anything else stays
    pending with its next check scheduled (per-order backoff, no later than a coming expiry).
    """
    at = _now(now)
    shop = shop_no or settings.shop_no
    order = _order_facts(session, row.order_no, shop)
    if order is None:
        log.warning("OrderQuery row for an unknown order %s of shop %s", row.order_no, shop,
                    extra={"order_no": row.order_no, "shop_no": shop})
        return SettleOutcome("unknown_order", row.order_no, False, "no such order")
    code = row.pay_status
    common = {"source": source, "ts_no": row.ts_no or None, "now": at}
    if code in paystatus.PAID_CODES:
        reasons = _common_mismatches(
            session, order, ts_no=row.ts_no, pay_type=row.pay_type, currency=row.raw.get("CurrencyID")
        )
        if row.amount != order.amount:
            reasons.append(f"amount {row.amount} differs from the stored {order.amount}")
        row_shop = row.raw.get("ShopNo")
        if row_shop not in (None, "") and row_shop != shop:
            reasons.append(f"row ShopNo {row_shop} is not ours (shop {shop})")
        if code[1:2] != order.pay_type:
            reasons.append(f"PayStatus {code} does not match PayType {order.pay_type}")
        if late := _late(order):
            reasons.insert(0, late)
        if reasons:
            return _apply(session, order, OrderStatus.NEEDS_REVIEW, amount=row.amount,
                          reason="; ".join(reasons), paid=True, **common)  # type: ignore[arg-type]
        return _apply(session, order, OrderStatus.PAID, amount=row.amount, reason=None,
                      paid_at=_bank_time(row.pay_date) or at, paid=True, **common)  # type: ignore[arg-type]
    if order.status != OrderStatus.PENDING:
        return SettleOutcome("noop", order.order_no, False, f"order is {order.status}")
    if order.pay_type == "A" and (
        code == paystatus.ATM_OVERDUE or (code == paystatus.ATM_UNPAID and _expiry_passed(order, row, at))
    ):
        return _apply(session, order, OrderStatus.EXPIRED, amount=None,
                      reason=f"unpaid past expiry (PayStatus {code})", **common)  # type: ignore[arg-type]
    if order.pay_type == "C" and code in paystatus.CARD_NOT_PAID:
        if _expiry_passed(order, row, at, CARD_CAPTURE_GRACE):
            return _apply(session, order, OrderStatus.EXPIRED, amount=None,
                          reason=f"card link unused past expiry (PayStatus {code})", **common)  # type: ignore[arg-type]
        # Unpaid and not yet past our expiry (even if the bank already calls the link expired): the
        # customer may still be paying. Look again when the order may expire.
        schedule_next_check(session, settings, order.order_no, now=at,
                            not_after=_expiry(order, row, CARD_CAPTURE_GRACE), shop_no=shop,
                            attempts=order.check_attempts)
        return SettleOutcome("pending", order.order_no, False, f"PayStatus {code}")
    if order.pay_type == "C" and code == paystatus.CARD_DECLINED:
        return _apply(session, order, OrderStatus.FAILED, amount=None,
                      reason=f"card declined (PayStatus {code})", **common)  # type: ignore[arg-type]
    not_after = _expiry(order, row) if order.pay_type == "A" and code == paystatus.ATM_UNPAID else None
    schedule_next_check(session, settings, order.order_no, now=at, not_after=not_after, shop_no=shop,
                        attempts=order.check_attempts)
    return SettleOutcome("pending", order.order_no, False, f"PayStatus {code or '(empty)'}")
