"""settle_from_pay_result: paid only when every field the bank signed agrees with what we stored."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.orm import Session

from core.models import Order
from core.services.orders import order_history
from core.services.settlement import Confirmation, settle_from_pay_result, transition
from core.settings import Settings
from core.sinopac.types import PayQueryResult
from tests.support.fakes import pay_result, query_row

from .conftest import NOW

TOKEN = "f" * 64


def _paid(order: Order, **overrides: Any) -> PayQueryResult:
    fields: dict[str, Any] = dict(order_no=order.order_no, amount=order.amount, ts_no=order.ts_no,
                                  pay_token=TOKEN, pay_type=order.pay_type)
    fields.update(overrides)
    return pay_result(**fields)


def test_a_matching_successful_payment_marks_the_order_paid(
    session: Session, settings: Settings, new_order: Callable[..., Order]
) -> None:
    order = new_order()

    out = settle_from_pay_result(session, settings, _paid(order), source="backend", pay_token=TOKEN, now=NOW)

    assert (out.kind, out.changed, out.order_no) == ("paid", True, order.order_no)
    assert order.status == "paid"
    assert order.pay_token == TOKEN
    assert order.paid_at == datetime(2026, 11, 25, 2, 30, tzinfo=UTC)  # PayDate 10:30 Taipei
    last = order_history(session, order.order_no)[-1]
    assert (last.to_status, last.source, last.ts_no, last.amount) == ("paid", "backend", order.ts_no, 50000)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"status": "F"}, "reply Status F"),
        ({"shop_no": "NA9999_001", "inner_shop_no": "NA0001_001"}, "reply ShopNo NA9999_001 is not ours"),
        ({"inner_shop_no": "NA9999_001"}, "TSResultContent ShopNo NA9999_001 is not ours"),
        ({"ap_type": "Refund"}, "APType Refund is not PayOut"),
        ({"amount": 49999}, "amount 49999 differs from the stored 50000"),
        ({"extra": {"CurrencyID": "USD"}}, "currency USD differs from the stored TWD"),
        ({"ts_no": "NA000199999999"}, "TSNo NA000199999999 differs from the stored NA000100000001"),
        ({"pay_type": "C"}, "PayType C differs from the stored A"),
        ({"pay_token": "e" * 64}, "reply PayToken differs from the one queried"),
        ({"inner_status": "F"}, "payment Status F for PayType A"),
    ],
)
def test_any_mismatch_parks_the_order_for_review_loudly(
    session: Session, settings: Settings, new_order: Callable[..., Order], caplog: pytest.LogCaptureFixture,
    overrides: dict[str, Any], reason: str,
) -> None:
    order = new_order()

    with caplog.at_level(logging.ERROR):
        out = settle_from_pay_result(session, settings, _paid(order, **overrides), source="backend",
                                     pay_token=TOKEN, now=NOW)

    assert (out.kind, out.changed) == ("review", True)
    assert order.status == "needs_review"
    assert reason in (order.status_reason or "")
    assert any(r.levelno == logging.ERROR and getattr(r, "order_no", None) == order.order_no
               for r in caplog.records)


def test_a_failed_card_payment_marks_the_order_failed(
    session: Session, settings: Settings, new_order: Callable[..., Order]
) -> None:
    order = new_order(pay_type="C", order_no="C001")
    reply = _paid(order, inner_status="F", description="授權失敗")

    out = settle_from_pay_result(session, settings, reply, source="return", pay_token=TOKEN, now=NOW)

    assert (out.kind, order.status) == ("failed", "failed")
    assert order_history(session, "C001")[-1].source == "return"


def test_an_unknown_order_is_not_ours_to_settle(
    session: Session, settings: Settings, new_order: Callable[..., Order], caplog: pytest.LogCaptureFixture
) -> None:
    order = new_order()
    reply = pay_result(order_no="ELSEWHERE1", amount=50000, ts_no="NA000177777777")

    with caplog.at_level(logging.ERROR):
        out = settle_from_pay_result(session, settings, reply, source="backend", pay_token=TOKEN, now=NOW)

    assert (out.kind, out.changed) == ("unknown_order", False)
    assert "ELSEWHERE1" in (out.reason or "")
    assert order.status == "pending"
    assert any(getattr(r, "order_no", None) == "ELSEWHERE1" for r in caplog.records)


def test_a_reply_without_ts_result_content_settles_nothing(session: Session, settings: Settings) -> None:
    reply = PayQueryResult(shop_no="NA0001_001", pay_token=TOKEN, date="", status="S", description="",
                           result=None)

    out = settle_from_pay_result(session, settings, reply, source="backend", pay_token=TOKEN, now=NOW)

    assert out.kind == "unknown_order"


def test_one_ts_no_never_pays_two_orders(
    session: Session, settings: Settings, new_order: Callable[..., Order]
) -> None:
    first = new_order(order_no="A001")
    second = new_order(order_no="A002")
    second.ts_no = None  # e.g. created before TSNo was stored
    session.flush()

    out = settle_from_pay_result(session, settings, _paid(second, ts_no=first.ts_no), source="backend",
                                 pay_token=TOKEN, now=NOW)

    assert out.kind == "review"
    assert f"already belongs to order {first.order_no}" in (second.status_reason or "")
    assert first.status == "pending"


def test_settling_a_paid_order_again_is_a_noop(
    session: Session, settings: Settings, new_order: Callable[..., Order]
) -> None:
    order = new_order()
    settle_from_pay_result(session, settings, _paid(order), source="backend", pay_token=TOKEN, now=NOW)

    out = settle_from_pay_result(session, settings, _paid(order), source="return", pay_token=TOKEN, now=NOW)

    assert (out.kind, out.changed) == ("noop", False)
    assert len(order_history(session, order.order_no)) == 2


@pytest.mark.parametrize(("closed", "reason"), [("expired", "paid after expiry"),
                                                 ("failed", "paid after failure")])
def test_a_verified_payment_for_a_closed_order_goes_to_review_with_the_reason(
    session: Session, settings: Settings, new_order: Callable[..., Order], caplog: pytest.LogCaptureFixture,
    closed: str, reason: str,
) -> None:
    # given an order we closed (an ATM transfer posted after our expiry, a card retried after a decline)
    order = new_order(pay_type="C" if closed == "failed" else "A", order_no="C001")
    transition(session, order.order_no, closed, source="sweep", now=NOW)

    # when the bank's verified word says it was paid
    with caplog.at_level(logging.ERROR):
        out = settle_from_pay_result(session, settings, _paid(order, pay_type=order.pay_type),
                                     source="backend", pay_token=TOKEN, now=NOW)

    # then the money is not dropped: the order needs review, with the reason
    assert (out.kind, out.changed, order.status) == ("review", True, "needs_review")
    assert order.status_reason == reason
    assert any(r.levelno == logging.ERROR and reason in r.getMessage() for r in caplog.records)


def test_a_decline_for_an_expired_order_changes_nothing(
    session: Session, settings: Settings, new_order: Callable[..., Order]
) -> None:
    order = new_order(pay_type="C", order_no="C001")
    transition(session, order.order_no, "expired", source="sweep", now=NOW)
    declined = _paid(order, pay_type="C", inner_status="F")
    out = settle_from_pay_result(session, settings, declined, source="backend", pay_token=TOKEN, now=NOW)
    assert (out.changed, order.status) == (False, "expired")


def test_a_paid_result_the_order_query_confirms_pays(
    session: Session, settings: Settings, new_order: Callable[..., Order]
) -> None:
    order = new_order()
    row = query_row(order_no=order.order_no, ts_no=order.ts_no or "", amount=order.amount, pay_status="1A400")
    out = settle_from_pay_result(session, settings, _paid(order), source="backend", pay_token=TOKEN, now=NOW,
                                 confirmation=Confirmation(row))
    assert (out.kind, order.status) == ("paid", "paid")


@pytest.mark.parametrize(("change", "said"), [
    ({"pay_status": "1A200"}, "PayStatus 1A200, not paid"),
    ({"ts_no": "OTHER0001"}, "TSNo OTHER0001 differs"),
    ({"amount": 1}, "amount 1 differs"),
    (None, "does not list the order"),
])
def test_a_paid_result_the_order_query_contradicts_goes_to_review(
    session: Session, settings: Settings, new_order: Callable[..., Order], change: dict[str, object] | None,
    said: str,
) -> None:
    # given a signed OrderPayQuery reply naming an order paid, and the bank's own OrderQuery disagreeing
    order = new_order()
    fields: dict[str, object] = dict(order_no=order.order_no, ts_no=order.ts_no or "", amount=order.amount,
                                     pay_status="1A400")
    row = None if change is None else query_row(**{**fields, **change})  # type: ignore[arg-type]

    out = settle_from_pay_result(session, settings, _paid(order), source="backend", pay_token=TOKEN, now=NOW,
                                 confirmation=Confirmation(row))

    # then the order is not paid: it waits for an operator, with what disagreed
    assert (out.kind, order.status) == ("review", "needs_review")
    assert said in (order.status_reason or "")
