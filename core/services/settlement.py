"""The settlement rules: only the bank's verified word moves an order.

A bank reply (an OrderPayQuery result, an OrderQuery row) is checked against the stored order
(core/services/mismatches.py), judged here, and applied as one transition
(core/services/transitions.py), so racing settlers make one change and one event.
Mismatches never pay an order: they park it in needs_review with the reason, logged loudly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from core.services.mismatches import (
    Confirmation,
    OrderFacts,
    Reported,
    mismatches,
    order_facts,
    reply_mismatches,
    row_mismatches,
)
from core.services.outcomes import SettleKind, SettleOutcome
from core.services.transitions import OrderNotFound, Stored, schedule_next_check, transition
from core.settings import Settings
from core.sinopac import paystatus
from core.sinopac.timefmt import from_bank_minute
from core.sinopac.types import OrderQueryRow, PayQueryResult, TSResult
from core.states import PAID_LATE, IllegalTransition, OrderStatus, Source

__all__ = [
    "CARD_CAPTURE_GRACE", "BankWord", "Confirmation", "OrderNotFound", "SettleKind", "SettleOutcome",
    "schedule_next_check", "settle_from_pay_result", "settle_from_query_row", "transition",
]

log = logging.getLogger(__name__)

# An unpaid card order expires this long after its link does: a customer who opened the link in its
# last minute may still be authorising (3-D Secure), and a capture the bank reports paid in the
# meantime settles the order paid instead. Ours, not the bank's: the bank documents no such margin.
CARD_CAPTURE_GRACE = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class BankWord:
    """Who brings the bank's word and the transaction it names: the same for every move one reply makes."""

    source: Source
    ts_no: str | None
    now: datetime
    pay_token: str | None = None


@dataclass(frozen=True, slots=True)
class _Verdict:
    """The move a reply calls for. `paid`: the bank verified that money was taken."""

    target: OrderStatus
    amount: int | None
    reason: str | None
    paid: bool = False
    paid_at: datetime | None = None


def _apply(session: Session, order: OrderFacts, word: BankWord, verdict: _Verdict) -> SettleOutcome:
    """Run one transition and turn races and final states into outcomes instead of exceptions.

    Only a verified payment (`paid`) may move a closed (expired, failed) order, and only to
    needs_review, with the reason why (`paid after expiry` / `paid after failure`).
    """
    target = verdict.target
    if not verdict.paid and target is OrderStatus.NEEDS_REVIEW and order.late():
        return SettleOutcome(SettleKind.NOOP, order.order_no, False, f"order is {order.status}")
    try:
        changed = transition(session, order.order_no, target, source=word.source, ts_no=word.ts_no,
                             amount=verdict.amount, detail=verdict.reason, pay_token=word.pay_token,
                             paid_at=verdict.paid_at, now=word.now, shop_no=order.shop_no,
                             stored=Stored(order.status, order.ts_no, order.shop_no))
    except IllegalTransition as exc:
        return _refused(session, order, word, verdict, exc.current)
    if not changed:
        return SettleOutcome(SettleKind.NOOP, order.order_no, False, verdict.reason)
    extra = _log_extra(order, word)
    if target is OrderStatus.NEEDS_REVIEW:
        log.error("order %s needs review: %s", order.order_no, verdict.reason,
                  extra={**extra, "reason": verdict.reason})
    else:
        log.info("order %s -> %s", order.order_no, target.value, extra=extra)
    return SettleOutcome(SettleKind.reaching(target), order.order_no, True, verdict.reason)


def _refused(
    session: Session, order: OrderFacts, word: BankWord, verdict: _Verdict, current: str
) -> SettleOutcome:
    """The order already left pending (final, or parked for an operator) before our move."""
    target = verdict.target
    late = PAID_LATE.get(OrderStatus(current)) if verdict.paid and target is OrderStatus.PAID else None
    if late:  # closed between our read and our update: the money still needs an operator
        return _apply(session, order, word, replace(verdict, target=OrderStatus.NEEDS_REVIEW, reason=late))
    # A bank word that contradicts that is money we may owe or miss: say so loudly, change nothing.
    if target in (OrderStatus.PAID, OrderStatus.NEEDS_REVIEW):
        level = logging.WARNING if current == OrderStatus.NEEDS_REVIEW else logging.ERROR
        log.log(level, "order %s is %s but the bank's word now means %s (%s); not changed",
                order.order_no, current, target.value, verdict.reason or "all fields match",
                extra={**_log_extra(order, word), "status": current})
        return SettleOutcome(SettleKind.CONFLICT, order.order_no, False, f"order is {current}")
    return SettleOutcome(SettleKind.NOOP, order.order_no, False, f"order is {current}")


def _log_extra(order: OrderFacts, word: BankWord) -> dict[str, object]:
    return {"order_no": order.order_no, "shop_no": order.shop_no, "ts_no": word.ts_no,
            "source": str(word.source)}


def _paid(
    session: Session, order: OrderFacts, word: BankWord, reasons: list[str], *, amount: int, pay_date: str,
    unconfirmed: str | None = None,
) -> SettleOutcome:
    """A payment the bank reports: paid when nothing disagrees, else needs_review with every reason,
    the first being why it cannot simply be paid (unconfirmed, or the order is closed)."""
    first = unconfirmed or order.late()
    if first:
        reasons = [first, *reasons]
    if reasons:
        # Money the bank verified (if confirmed): a closed order may move, to needs_review only.
        return _apply(session, order, word, _Verdict(OrderStatus.NEEDS_REVIEW, amount, "; ".join(reasons),
                                                     paid=not unconfirmed))
    return _apply(session, order, word, _Verdict(OrderStatus.PAID, amount, None, paid=True,
                                                 paid_at=_bank_time(pay_date) or word.now))


def _bank_time(value: str) -> datetime | None:
    try:
        return from_bank_minute(value)
    except ValueError:
        return None


# -- OrderPayQuery ------------------------------------------------------------------------------------


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
    ts = result.result
    if ts is None:
        log.error("PayQuery reply without TSResultContent", extra={"reason": "no TSResultContent"})
        return SettleOutcome(SettleKind.UNKNOWN_ORDER, None, False, "reply has no TSResultContent")
    shop = shop_no or settings.shop_no
    order = order_facts(session, ts.order_no, shop)
    if order is None:
        reason = f"OrderNo {ts.order_no} is not ours (no such order of shop {shop})"
        log.error("PayQuery names an unknown order %s of shop %s", ts.order_no, shop,
                  extra={"order_no": ts.order_no, "shop_no": shop})
        return SettleOutcome(SettleKind.UNKNOWN_ORDER, ts.order_no, False, reason)
    word = BankWord(Source(source), ts.ts_no or None, now or datetime.now(UTC), pay_token)
    return _judge_reply(session, order, word, result, ts, shop, confirmation)


def _judge_reply(
    session: Session, order: OrderFacts, word: BankWord, result: PayQueryResult, ts: TSResult, shop: str,
    confirmation: Confirmation | None,
) -> SettleOutcome:
    reasons = reply_mismatches(result, ts, shop, word.pay_token)
    if ts.status == "S":
        said = Reported(ts.ts_no, ts.pay_type, ts.raw.get("CurrencyID"), ts.amount)
        reasons += mismatches(session, order, said)
        if not ts.ts_no:
            reasons.append("no TSNo in a successful payment")
        unconfirmed = confirmation.disagreement(ts.ts_no, ts.amount) if confirmation is not None else None
        return _paid(session, order, word, reasons, amount=ts.amount, pay_date=ts.pay_date,
                     unconfirmed=unconfirmed)
    reasons += mismatches(session, order, Reported(ts.ts_no, ts.pay_type, ts.raw.get("CurrencyID")))
    if ts.status == "F" and order.pay_type == "C" and not reasons:
        detail = f"card payment failed: {ts.description}".strip().rstrip(":")
        return _apply(session, order, word, _Verdict(OrderStatus.FAILED, ts.amount or None, detail))
    reasons.append(f"payment Status {ts.status or '(empty)'} for PayType {order.pay_type}")
    return _apply(session, order, word, _Verdict(OrderStatus.NEEDS_REVIEW, ts.amount or None,
                                                 "; ".join(reasons)))


# -- OrderQuery -----------------------------------------------------------------------------------------


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
    shop = shop_no or settings.shop_no
    order = order_facts(session, row.order_no, shop)
    if order is None:
        log.warning("OrderQuery row for an unknown order %s of shop %s", row.order_no, shop,
                    extra={"order_no": row.order_no, "shop_no": shop})
        return SettleOutcome(SettleKind.UNKNOWN_ORDER, row.order_no, False, "no such order")
    word = BankWord(Source(source), row.ts_no or None, now or datetime.now(UTC))
    code = row.pay_status
    if code in paystatus.PAID_CODES:
        reasons = row_mismatches(session, order, row, shop)
        return _paid(session, order, word, reasons, amount=row.amount, pay_date=row.pay_date)
    if order.status != OrderStatus.PENDING:
        return SettleOutcome(SettleKind.NOOP, order.order_no, False, f"order is {order.status}")
    verdict = _unpaid_verdict(order, row, word.now)
    if verdict is not None:
        return _apply(session, order, word, verdict)
    return _still_pending(session, settings, order, row, word.now)


def _unpaid_verdict(order: OrderFacts, row: OrderQueryRow, at: datetime) -> _Verdict | None:
    """An unpaid order's end, when the bank's code and the clock say it has come (None: not yet)."""
    code = row.pay_status
    if order.pay_type == "A" and (
        code == paystatus.ATM_OVERDUE or (code == paystatus.ATM_UNPAID and _expiry_passed(order, row, at))
    ):
        return _Verdict(OrderStatus.EXPIRED, None, f"unpaid past expiry (PayStatus {code})")
    if order.pay_type == "C" and code in paystatus.CARD_NOT_PAID and _expiry_passed(
        order, row, at, CARD_CAPTURE_GRACE
    ):
        return _Verdict(OrderStatus.EXPIRED, None, f"card link unused past expiry (PayStatus {code})")
    if order.pay_type == "C" and code == paystatus.CARD_DECLINED:
        return _Verdict(OrderStatus.FAILED, None, f"card declined (PayStatus {code})")
    return None


def _still_pending(
    session: Session, settings: Settings, order: OrderFacts, row: OrderQueryRow, at: datetime
) -> SettleOutcome:
    """Still unpaid: schedule the next check, no later than the moment the order may expire."""
    code = row.pay_status
    not_after = None
    if order.pay_type == "C" and code in paystatus.CARD_NOT_PAID:
        # Unpaid and not yet past our expiry (even if the bank already calls the link expired): the
        # customer may still be paying. Look again when the order may expire.
        not_after = _expiry(order, row, CARD_CAPTURE_GRACE)
    elif order.pay_type == "A" and code == paystatus.ATM_UNPAID:
        not_after = _expiry(order, row)
    schedule_next_check(session, settings, order.order_no, now=at, not_after=not_after,
                        shop_no=order.shop_no, attempts=order.check_attempts)
    return SettleOutcome(SettleKind.PENDING, order.order_no, False, f"PayStatus {code or '(empty)'}")


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
