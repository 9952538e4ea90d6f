"""settle_from_query_row: what an OrderQuery row means for a pending order."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session

from core.models import Order
from core.services.orders import order_history
from core.services.settlement import CARD_CAPTURE_GRACE, settle_from_query_row, transition
from core.settings import Settings
from core.sinopac.types import OrderQueryRow
from tests.support.fakes import query_row

from .conftest import NOW

# The fixture's ATM orders are payable through 27 Nov (Taipei): ExpireDate 202611272359.
AFTER_EXPIRY = datetime(2026, 11, 27, 16, 0, tzinfo=UTC)


def _row(order: Order, **overrides: Any) -> OrderQueryRow:
    fields: dict[str, Any] = dict(order_no=order.order_no, amount=order.amount, ts_no=order.ts_no,
                                  pay_type=order.pay_type, expire_date="202611272359")
    fields.update(overrides)
    return query_row(**fields)


@pytest.mark.parametrize(("pay_type", "code"), [("A", "1A400"), ("C", "1C400")])
def test_a_paid_code_with_matching_amount_pays_the_order(
    session: Session, settings: Settings, new_order: Callable[..., Order], pay_type: str, code: str
) -> None:
    order = new_order(pay_type=pay_type, order_no="X001")

    out = settle_from_query_row(session, settings, _row(order, pay_status=code), source="sweep", now=NOW)

    assert (out.kind, order.status) == ("paid", "paid")
    assert order_history(session, "X001")[-1].source == "sweep"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"amount": 5000}, "amount 5000 differs"),
        ({"ts_no": "NA000155555555"}, "TSNo NA000155555555 differs"),
        ({"pay_status": "1C400"}, "PayStatus 1C400 does not match PayType A"),
        ({"extra": {"ShopNo": "NA9999_001"}}, "row ShopNo NA9999_001 is not ours"),
    ],
)
def test_a_paid_code_with_a_mismatch_goes_to_review(
    session: Session, settings: Settings, new_order: Callable[..., Order], overrides: dict[str, Any],
    reason: str,
) -> None:
    order = new_order(expire_days=2)

    out = settle_from_query_row(session, settings, _row(order, **overrides), source="sweep", now=NOW)

    assert (out.kind, order.status) == ("review", "needs_review")
    assert reason in (order.status_reason or "")


def test_an_unpaid_atm_order_before_expiry_stays_pending_with_backoff(
    session: Session, settings: Settings, new_order: Callable[..., Order]
) -> None:
    order = new_order(expire_days=2)
    row = _row(order, pay_status="1A200", pay_date="")

    first = settle_from_query_row(session, settings, row, source="sweep", now=NOW)
    assert (first.kind, order.status, order.check_attempts) == ("pending", "pending", 1)
    assert order.next_check_at == NOW + timedelta(seconds=300)

    settle_from_query_row(session, settings, row, source="sweep", now=NOW)
    settle_from_query_row(session, settings, row, source="sweep", now=NOW)
    assert order.check_attempts == 3
    assert order.next_check_at == NOW + timedelta(seconds=900)  # the schedule's last step repeats
    assert len(order_history(session, order.order_no)) == 1


def test_an_unpaid_atm_order_is_still_payable_in_its_last_minute(
    session: Session, settings: Settings, new_order: Callable[..., Order]
) -> None:
    order = new_order(expire_days=2)

    out = settle_from_query_row(session, settings, _row(order, pay_status="1A200", pay_date=""),
                                source="sweep", now=AFTER_EXPIRY - timedelta(seconds=30))

    assert (out.kind, order.status) == ("pending", "pending")
    assert order.next_check_at == AFTER_EXPIRY  # looked at again when it may expire, not 300 s later


def test_an_unpaid_atm_order_past_its_expire_date_expires(
    session: Session, settings: Settings, new_order: Callable[..., Order]
) -> None:
    order = new_order(expire_days=2)

    out = settle_from_query_row(session, settings, _row(order, pay_status="1A200", pay_date=""),
                                source="sweep", now=AFTER_EXPIRY)

    assert (out.kind, order.status) == ("expired", "expired")
    assert order.next_check_at is None


def test_the_atm_overdue_code_expires_the_order(
    session: Session, settings: Settings, new_order: Callable[..., Order]
) -> None:
    order = new_order(order_no="X001")

    out = settle_from_query_row(session, settings, _row(order, pay_status="1A600", pay_date=""),
                                source="sweep", now=NOW)

    assert (out.kind, order.status) == ("expired", "expired")


# The fixture's card orders are created at NOW with a 30-minute link; the bank's ExpireDate is the
# link's last minute, as the sandbox reports it.
CARD_EXPIRES = NOW + timedelta(minutes=30)
CARD_DEADLINE = CARD_EXPIRES + CARD_CAPTURE_GRACE


def _card_row(order: Order, code: str) -> OrderQueryRow:
    return _row(order, pay_status=code, pay_date="", expire_date="202611251029")


@pytest.mark.parametrize("code", ["1C200", "1C600"])
def test_an_unpaid_card_order_past_its_expiry_expires(
    session: Session, settings: Settings, new_order: Callable[..., Order], code: str
) -> None:
    # given a card order whose link expired unused (the bank reports it unpaid or link-expired)
    order = new_order(pay_type="C", order_no="C001")

    # when the sweep reads it after our expiry and the capture grace
    out = settle_from_query_row(session, settings, _card_row(order, code), source="sweep", now=CARD_DEADLINE)

    # then it is expired, with the code in the reason, and is no longer checked
    assert (out.kind, order.status) == ("expired", "expired")
    assert code in (order.status_reason or "")
    assert order.next_check_at is None
    assert [(e.to_status, e.source) for e in order_history(session, "C001")][-1] == ("expired", "sweep")


@pytest.mark.parametrize("code", ["1C200", "1C600"])
def test_an_unpaid_card_order_is_not_expired_before_our_expiry_and_grace(
    session: Session, settings: Settings, new_order: Callable[..., Order], code: str
) -> None:
    # given a card order the bank already calls unpaid or link-expired
    order = new_order(pay_type="C", order_no="C001")

    # when the sweep reads it before our expiry plus the grace has passed
    out = settle_from_query_row(session, settings, _card_row(order, code), source="sweep",
                                now=CARD_DEADLINE - timedelta(seconds=1))

    # then it stays pending and is looked at again when it may expire, not a backoff step later
    assert (out.kind, order.status, order.check_attempts) == ("pending", "pending", 1)
    assert order.next_check_at == CARD_DEADLINE


def test_an_unpaid_card_order_is_checked_again_at_its_deadline_when_the_backoff_is_later(
    session: Session, settings: Settings, new_order: Callable[..., Order]
) -> None:
    # given a 1-minute card link (the schedule's next step, 300 s, lies beyond its deadline)
    order = new_order(pay_type="C", order_no="C001", expire_minutes=1)
    row = _row(order, pay_status="1C200", pay_date="", expire_date="202611251000")

    out = settle_from_query_row(session, settings, row, source="sweep", now=NOW + timedelta(seconds=60))

    assert out.kind == "pending"
    assert order.next_check_at == NOW + timedelta(minutes=1) + CARD_CAPTURE_GRACE


def test_a_late_card_capture_reported_paid_settles_paid_even_past_expiry(
    session: Session, settings: Settings, new_order: Callable[..., Order]
) -> None:
    # given a card order whose link expired, but the customer's authorisation completed late
    order = new_order(pay_type="C", order_no="C001")

    # when the bank reports it captured after our expiry
    out = settle_from_query_row(session, settings, _row(order, pay_status="1C400"), source="sweep",
                                now=CARD_DEADLINE + timedelta(hours=1))

    # then the payment counts: paid, not expired
    assert (out.kind, order.status) == ("paid", "paid")


def test_a_card_capture_after_the_order_expired_goes_to_review_paid_after_expiry(
    session: Session, settings: Settings, new_order: Callable[..., Order], caplog: pytest.LogCaptureFixture
) -> None:
    # given a card order already expired on the bank's unpaid word
    order = new_order(pay_type="C", order_no="C001")
    settle_from_query_row(session, settings, _card_row(order, "1C600"), source="sweep", now=CARD_DEADLINE)

    # when the bank later reports it captured
    with caplog.at_level(logging.ERROR):
        out = settle_from_query_row(session, settings, _row(order, pay_status="1C400"), source="sweep",
                                    now=CARD_DEADLINE + timedelta(hours=1))

    # then the money is not dropped: the order waits for an operator, logged loudly
    assert (out.kind, order.status, order.status_reason) == ("review", "needs_review", "paid after expiry")
    assert any("C001" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)


def test_a_declined_card_fails_the_order(
    session: Session, settings: Settings, new_order: Callable[..., Order]
) -> None:
    order = new_order(pay_type="C", order_no="C001")

    out = settle_from_query_row(session, settings, _row(order, pay_status="1C500", pay_date=""),
                                source="sweep", now=NOW)

    assert (out.kind, order.status) == ("failed", "failed")


@pytest.mark.parametrize("code", ["1C300", "", "ZZZZZ"])
def test_an_unknown_card_code_leaves_the_order_pending_even_past_expiry(
    session: Session, settings: Settings, new_order: Callable[..., Order], code: str
) -> None:
    order = new_order(pay_type="C", order_no="C001")

    out = settle_from_query_row(session, settings, _row(order, pay_status=code, pay_date=""),
                                source="sweep", now=AFTER_EXPIRY)

    assert (out.kind, order.status, order.check_attempts) == ("pending", "pending", 1)


def test_a_row_for_an_unknown_order_changes_nothing(session: Session, settings: Settings) -> None:
    out = settle_from_query_row(session, settings, query_row(order_no="GHOST", amount=100, ts_no="T1"),
                                source="sweep", now=NOW)

    assert (out.kind, out.changed) == ("unknown_order", False)


def test_a_settled_order_is_left_alone(
    session: Session, settings: Settings, new_order: Callable[..., Order]
) -> None:
    order = new_order(expire_days=2)
    transition(session, order.order_no, "paid", source="backend", now=NOW)

    again = settle_from_query_row(session, settings, _row(order), source="sweep", now=NOW)
    unpaid = settle_from_query_row(session, settings, _row(order, pay_status="1A200"), source="sweep",
                                   now=AFTER_EXPIRY)

    assert (again.kind, unpaid.kind, order.status) == ("noop", "noop", "paid")
    assert len(order_history(session, order.order_no)) == 2
