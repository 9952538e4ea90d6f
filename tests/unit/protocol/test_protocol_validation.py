"""Programmer errors are ValueErrors raised before anything is sent to the bank."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
import requests

from core.sinopac.client import QPayClient
from core.sinopac.messages import OrderCreateRequest, OrderQueryRequest

from .conftest import make_settings


class _NoNetwork(requests.Session):
    def post(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        raise AssertionError("nothing may be sent for invalid input")


@pytest.fixture
def offline() -> QPayClient:
    return QPayClient(make_settings("http://127.0.0.1:9/api/"), http=_NoNetwork())


GOOD: dict[str, Any] = {
    "order_no": "ATM20240101001",
    "amount": 123400,
    "pay_type": "A",
    "product_name": "測試商品",
    "return_url": "https://shop.example.com/qpay/return",
    "backend_url": "https://shop.example.com/qpay/backend",
    "expire_date": date(2024, 1, 10),
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"amount": 0}, "amount must be a positive whole number"),
        ({"amount": -100}, "amount must be a positive whole number"),
        ({"amount": 1000.0}, "amount must be a positive whole number"),
        ({"amount": "1000"}, "amount must be a positive whole number"),
        ({"amount": True}, "amount must be a positive whole number"),
        ({"amount": 1_000_000_000}, "at most 999999999"),
        ({"pay_type": "X"}, "pay_type must be 'A'"),
        ({"expire_date": None}, "PayType A needs expire_date"),
        ({"expire_date": datetime(2024, 1, 10, tzinfo=UTC)}, "PayType A needs expire_date"),
        ({"order_no": ""}, "order_no is required"),
        ({"order_no": "A" * 51}, "order_no is longer than 50"),
        ({"order_no": "A1'; --"}, "order_no must not contain"),
        ({"product_name": "  "}, "product_name is required"),
        ({"product_name": '50% off "tea"'}, "product_name must not contain"),
        ({"product_name": "茶" * 61}, "product_name is longer than 60"),
        ({"return_url": ""}, "return_url is required"),
        ({"memo": "m" * 31}, "memo is longer than 30"),
        ({"param1": "line\nbreak"}, "param1 contains control characters"),
        ({"pay_type": "C", "expire_date": date(2024, 1, 10)}, "expire_date applies only to PayType A"),
        ({"pay_type": "C", "expire_date": None, "card_exp_minutes": 31}, "card_exp_minutes must be"),
        ({"pay_type": "C", "expire_date": None, "card_exp_minutes": 0}, "card_exp_minutes must be"),
        ({"pay_type": "C", "expire_date": None, "auto_billing": "yes"}, "auto_billing must be"),
        ({"pay_type": "C", "expire_date": None, "auto_billing": "N"}, "needs exp_billing_days from 1 to 7"),
        (
            {"pay_type": "C", "expire_date": None, "auto_billing": "N", "exp_billing_days": 8},
            "needs exp_billing_days from 1 to 7",
        ),
        ({"pay_type": "C", "expire_date": None, "exp_billing_days": 3}, "only when auto_billing is 'N'"),
    ],
)
def test_invalid_order_create_input_is_a_value_error(
    change: dict[str, Any], message: str, offline: QPayClient
) -> None:
    with pytest.raises(ValueError, match=message):
        offline.create_order(OrderCreateRequest(**{**GOOD, **change}))


AWARE = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "at least one condition"),
        ({"pay_flag": "P"}, "pay_flag must be"),
        ({"pay_type": "Z"}, "pay_type must be"),
        ({"pay_from": AWARE}, "pay_from and pay_to must be given together"),
        ({"order_from": datetime(2024, 1, 1), "order_to": AWARE}, "order_from must be a timezone-aware"),
        ({"pay_from": AWARE.replace(day=2), "pay_to": AWARE}, "pay_from is after pay_to"),
        ({"order_no": "bad%no"}, "order_no must not contain"),
    ],
)
def test_invalid_query_is_a_value_error(kwargs: dict[str, Any], message: str, offline: QPayClient) -> None:
    with pytest.raises(ValueError, match=message):
        offline.query_orders(OrderQueryRequest(**kwargs))


@pytest.mark.parametrize("token", ["", "   ", " abc", "tok\u00e9n", "a" * 256])
def test_invalid_pay_token_is_a_value_error_that_does_not_echo_it(token: str, offline: QPayClient) -> None:
    with pytest.raises(ValueError, match=r"^pay_token ") as info:
        offline.pay_query(token)
    assert token.strip() == "" or token not in str(info.value)


@pytest.mark.parametrize("key_id", ["鑰匙-id", "key\nid", "key\tid"])
def test_a_key_id_that_cannot_be_an_http_header_is_refused_without_echoing_it(key_id: str) -> None:
    # Refused at start-up, by the settings, before any client exists.
    with pytest.raises(ValueError, match=r"^QPAY_KEY_ID must be printable ASCII") as info:
        QPayClient(make_settings("http://127.0.0.1:9/api/", QPAY_KEY_ID=key_id), http=_NoNetwork())
    assert key_id not in str(info.value)
