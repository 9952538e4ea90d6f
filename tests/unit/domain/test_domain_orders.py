"""Creating orders: OrderCreate first, then the pending row with TSNo, payment details and expiry."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import Order, OrderEvent
from core.services.orders import NewOrder, OrderValidationError, create_order, get_order, order_history
from core.settings import Settings
from core.sinopac.errors import BankTimeout, MalformedReply
from core.sinopac.types import OrderCreateResult
from tests.support.fakes import FakeBankClient, rejection

from .conftest import NOW


def test_atm_order_is_stored_pending_with_account_and_taipei_day_expiry(
    session: Session, bank: FakeBankClient, new_order: Callable[..., Order]
) -> None:
    order = new_order(amount_twd=500, pay_type="A", order_no="A001", expire_days=2)

    stored = get_order(session, "A001")
    assert stored is order
    assert (order.status, order.amount, order.currency, order.pay_type) == ("pending", 50000, "TWD", "A")
    assert order.ts_no == "NA000100000001"
    assert order.atm_pay_no == "99922530174617"
    # Created at 10:00 Taipei on 25 Nov; payable through 27 Nov, i.e. until 28 Nov 00:00 Taipei.
    assert order.expires_at == datetime(2026, 11, 27, 16, 0, tzinfo=UTC)
    assert order.next_check_at == NOW + timedelta(seconds=60)
    assert bank.created[0].expire_date == date(2026, 11, 27)
    assert bank.created[0].amount == 50000
    assert bank.created[0].backend_url == "https://shop.example/qpay/backend"
    assert bank.created[0].return_url == "https://shop.example/qpay/return"


def test_atm_expire_date_follows_the_taipei_calendar_not_utc(
    session: Session, bank: FakeBankClient, settings: Settings
) -> None:
    # 17:30 UTC on 25 Nov is already 01:30 on 26 Nov in Taipei.
    late = datetime(2026, 11, 25, 17, 30, tzinfo=UTC)

    order = create_order(session, bank, settings, NewOrder(300, "A", "書", order_no="A002", expire_days=0),
                         now=late)

    assert bank.created[0].expire_date == date(2026, 11, 26)
    assert order.expires_at == datetime(2026, 11, 26, 16, 0, tzinfo=UTC)


def test_card_order_expires_after_exp_minutes_and_keeps_the_pay_url(
    bank: FakeBankClient, new_order: Callable[..., Order]
) -> None:
    order = new_order(amount_twd=1200, pay_type="C", order_no="C001")

    assert order.card_pay_url == "https://bank.example/PayCard?TD=NA000100000001"
    assert order.atm_pay_no is None
    assert order.expires_at == NOW + timedelta(minutes=30)
    assert bank.created[0].card_exp_minutes == 30
    assert bank.created[0].expire_date is None


@pytest.mark.parametrize("minutes", [1, 10, 30])
def test_a_card_order_asks_the_bank_for_its_expire_minutes_and_stores_that_expiry(
    bank: FakeBankClient, new_order: Callable[..., Order], minutes: int
) -> None:
    order = new_order(amount_twd=1200, pay_type="C", order_no="C002", expire_minutes=minutes)

    assert bank.created[0].card_exp_minutes == minutes
    assert order.expires_at == NOW + timedelta(minutes=minutes)


def test_creation_appends_a_pending_event_from_the_api(
    session: Session, new_order: Callable[..., Order]
) -> None:
    new_order(order_no="A003")

    events = order_history(session, "A003")

    assert [(e.from_status, e.to_status, e.source, e.amount) for e in events] == [
        (None, "pending", "api", 50000)
    ]


def test_an_order_number_is_generated_when_absent(
    session: Session, bank: FakeBankClient, settings: Settings
) -> None:
    order = create_order(session, bank, settings, NewOrder(100, "A", "咖啡"), now=NOW)

    assert re.fullmatch(r"Q20261125100000[0-9A-F]{8}", order.order_no)


@pytest.mark.parametrize(
    ("new", "field"),
    [
        (NewOrder(0, "A", "x"), "amount_twd"),
        (NewOrder(-5, "A", "x"), "amount_twd"),
        (NewOrder(10_000_000, "A", "x"), "amount_twd"),
        (NewOrder(True, "A", "x"), "amount_twd"),  # type: ignore[arg-type]
        (NewOrder(100, "B", "x"), "pay_type"),
        (NewOrder(100, "A", ""), "product_name"),
        (NewOrder(100, "A", "100% cotton"), "product_name"),
        (NewOrder(100, "A", "x" * 61), "product_name"),
        (NewOrder(100, "A", "x", order_no="bad'no"), "order_no"),
        (NewOrder(100, "A", "x", order_no="x" * 51), "order_no"),
        (NewOrder(100, "C", "x", expire_days=3), "expire_days"),
        (NewOrder(100, "A", "x", expire_days=-1), "expire_days"),
        (NewOrder(100, "A", "x", expire_days=61), "expire_days"),
        (NewOrder(100, "A", "x", expire_minutes=10), "expire_minutes"),
        (NewOrder(100, "C", "x", expire_minutes=0), "expire_minutes"),
        (NewOrder(100, "C", "x", expire_minutes=31), "expire_minutes"),
        (NewOrder(100, "C", "x", expire_minutes=True), "expire_minutes"),  # type: ignore[arg-type]
        (NewOrder(100, "C", "x", expire_minutes=10.5), "expire_minutes"),  # type: ignore[arg-type]
    ],
)
def test_bad_input_is_refused_before_calling_the_bank(
    session: Session, bank: FakeBankClient, settings: Settings, new: NewOrder, field: str
) -> None:
    with pytest.raises(OrderValidationError) as err:
        create_order(session, bank, settings, new, now=NOW)

    assert err.value.field == field
    assert bank.created == []


def test_a_duplicate_order_number_is_refused(
    session: Session, bank: FakeBankClient, settings: Settings, new_order: Callable[..., Order]
) -> None:
    new_order(order_no="A004")

    with pytest.raises(OrderValidationError) as err:
        create_order(session, bank, settings, NewOrder(100, "A", "x", order_no="A004"), now=NOW)

    assert err.value.field == "order_no"
    assert len(bank.created) == 1


@pytest.mark.parametrize(
    "reply",
    [
        rejection("E0602", "收款方式未啟用", service="OrderCreate"),
        BankTimeout("OrderCreate: read timeout", service="OrderCreate"),
        OrderCreateResult(order_no="A005", shop_no="NA0001_001", ts_no="NA0001X", amount=99,
                          pay_type="A", status="S", description="", atm_pay_no="999"),
        OrderCreateResult(order_no="A005", shop_no="NA0001_001", ts_no="NA0001X", amount=10000,
                          pay_type="A", status="S", description="", atm_pay_no=None),
    ],
    ids=["rejected", "timeout", "amount-differs", "no-account"],
)
def test_a_failed_or_odd_order_create_stores_nothing(
    session: Session, bank: FakeBankClient, settings: Settings, reply: object
) -> None:
    bank.script_create(reply)

    with pytest.raises((type(reply), MalformedReply) if isinstance(reply, Exception) else MalformedReply):
        create_order(session, bank, settings, NewOrder(100, "A", "x", order_no="A005"), now=NOW)

    assert session.scalar(select(func.count()).select_from(Order)) == 0
    assert session.scalar(select(func.count()).select_from(OrderEvent)) == 0
