"""A confirming OrderQuery's Nonce fetched while the OrderPayQuery is in flight (one round trip less).

PROTOCOL.md §2 still holds: every Order request carries a nonce fetched for it alone, used once.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from core.sinopac.client import ConfirmsAhead, QPayClient
from core.sinopac.errors import BankHTTPError
from core.sinopac.messages import OrderQueryRequest
from core.sinopac.types import BankCallRecord

from .bankstub import Reply, StubBank, json_reply
from .conftest import make_settings

TOKEN = "8630ccdda21ef69e17fd66558b6fa6bea03f988805d9c9949d2348755964469f"


def _paths(bank: StubBank) -> list[str]:
    return [s.path.rsplit("/", 1)[1] for s in bank.seen]


def test_the_second_nonce_is_fetched_while_the_pay_query_is_in_flight(bank: StubBank) -> None:
    # given a bank that answers the OrderPayQuery only once a second Nonce has been asked for
    second_nonce = threading.Event()
    nonces = 0

    def nonce() -> Reply:
        nonlocal nonces
        nonces += 1
        if nonces == 2:
            second_nonce.set()
        reply = json_reply({"Nonce": f"N{nonces}" + "x" * 100})
        bank.nonces_issued.append(f"N{nonces}" + "x" * 100)
        return reply

    def order(service: str, request: dict[str, Any]) -> Reply:
        if service == "OrderPayQuery":
            assert second_nonce.wait(10), "the confirmation's Nonce was not fetched during the pay query"
        return bank.sealed(service, bank.default_inner(service, request))

    bank.on_nonce, bank.on_order = nonce, order
    with QPayClient(make_settings(bank.base_url)) as qpay:
        assert isinstance(qpay, ConfirmsAhead)
        # when a settlement asks for the confirmation's nonce ahead, then pays and confirms
        ahead = qpay.confirmation_ahead()
        paid = qpay.pay_query(TOKEN, confirm_ahead=ahead)
        query = qpay.query_orders(OrderQueryRequest(order_no="ATM20240101001"), ahead=ahead)
    # then both answers came, and each Order request carried its own nonce, used once
    assert paid.result is not None
    assert [r.order_no for r in query.orders] == ["ATM20240101001"]
    assert sorted(_paths(bank)) == ["Nonce", "Nonce", "Order", "Order"]
    used = [s.body["Nonce"] for s in bank.seen if s.path.endswith("/Order")]
    assert len(set(used)) == 2
    assert set(used) <= set(bank.nonces_issued)


def test_a_nonce_fetched_ahead_is_taken_once_and_never_reused(bank: StubBank) -> None:
    with QPayClient(make_settings(bank.base_url)) as qpay:
        ahead = qpay.confirmation_ahead()
        qpay.pay_query(TOKEN, confirm_ahead=ahead)
        request = OrderQueryRequest(order_no="ATM20240101001")
        qpay.query_orders(request, ahead=ahead)
        qpay.query_orders(request, ahead=ahead)  # a second call asks for its own
    used = [s.body["Nonce"] for s in bank.seen if s.path.endswith("/Order")]
    assert _paths(bank).count("Nonce") == 3
    assert len(set(used)) == 3


def test_a_nonce_not_needed_is_dropped_without_an_order_request(bank: StubBank) -> None:
    with QPayClient(make_settings(bank.base_url)) as qpay:
        qpay.pay_query(TOKEN, confirm_ahead=qpay.confirmation_ahead())
    assert sorted(_paths(bank)) == ["Nonce", "Nonce", "Order"]


def test_the_nonce_ahead_starts_only_once_the_pay_querys_own_nonce_was_granted(bank: StubBank) -> None:
    # given a bank whose first Nonce answers 503 (a refused key set, an outage)
    answers = iter([json_reply({"Message": "busy"}, status=503)])
    bank.on_nonce = lambda: next(answers, None) or json_reply({"Nonce": "N" * 108})
    with QPayClient(make_settings(bank.base_url)) as qpay:
        ahead = qpay.confirmation_ahead()
        with pytest.raises(BankHTTPError):
            qpay.pay_query(TOKEN, confirm_ahead=ahead)
        # then nothing was asked in its shadow, and the OrderQuery asks for its own nonce
        assert _paths(bank) == ["Nonce"]
        qpay.query_orders(OrderQueryRequest(order_no="ATM20240101001"), ahead=ahead)
    assert _paths(bank) == ["Nonce", "Nonce", "Order"]


def test_a_failed_nonce_ahead_fails_the_call_it_was_for_with_one_record(bank: StubBank) -> None:
    # given a bank whose Nonce endpoint answers 503 from its second request on (the one fetched ahead)
    records: list[BankCallRecord] = []
    answers = iter([json_reply({"Nonce": "N" * 108})])
    bank.on_nonce = lambda: next(answers, None) or json_reply({"Message": "busy"}, status=503)
    with QPayClient(make_settings(bank.base_url), observer=records.append) as qpay:
        ahead = qpay.confirmation_ahead()
        qpay.pay_query(TOKEN, confirm_ahead=ahead)
        # when the OrderQuery it was fetched for is made
        try:
            qpay.query_orders(OrderQueryRequest(order_no="ATM20240101001"), ahead=ahead)
        except BankHTTPError as exc:
            error: BankHTTPError | None = exc
        else:
            error = None
    # then that call fails as if it had asked for the nonce itself: named, counted and recorded once
    assert error is not None
    assert str(error).startswith("OrderQuery: Nonce answered HTTP 503")
    assert [(r.api_service, r.outcome, r.http_status) for r in records] == [
        ("OrderPayQuery", "ok", 200), ("OrderQuery", "transport_error", 503)]
    assert _paths(bank).count("Order") == 1  # the OrderPayQuery's
