"""Verified replies become typed results; the bank's mixed Amount types become one int."""

from __future__ import annotations

from typing import Any

import pytest

from core.sinopac.envelope import rejection_code
from core.sinopac.errors import MalformedReply
from core.sinopac.results import parse_amount, to_pay_query_result, to_query_result


@pytest.mark.parametrize(
    ("value", "expected"),
    [(50000, 50000), ("9440300", 9440300), (" 79900 ", 79900), (18000.0, 18000), ("0", 0)],
)
def test_amount_number_or_string_becomes_int(value: Any, expected: int) -> None:
    assert parse_amount(value, service="OrderQuery", where="Amount") == expected


@pytest.mark.parametrize("value", ["", "12.50", "-5", "１２３", "1e3", 12.5, -1, None, [], True])
def test_amount_that_is_not_a_whole_non_negative_number_is_malformed(value: Any) -> None:
    with pytest.raises(MalformedReply, match=r"^OrderQuery: Amount"):
        parse_amount(value, service="OrderQuery", where="Amount")


def test_query_reply_without_order_list_has_no_orders() -> None:
    result = to_query_result({"ShopNo": "NA0001_001", "Status": "S", "OrderList": None})
    assert result.orders == ()


def test_query_reply_whose_order_list_is_not_a_list_is_malformed() -> None:
    with pytest.raises(MalformedReply, match="OrderList is not a list"):
        to_query_result({"Status": "S", "OrderList": {"OrderNo": "A1"}})


def test_failed_payment_without_amount_is_typed_with_zero() -> None:
    inner = {
        "Status": "S",
        "TSResultContent": {"OrderNo": "A1", "Status": "F", "Amount": "", "Description": "x"},
    }
    result = to_pay_query_result(inner)
    assert result.result is not None
    assert (result.result.status, result.result.amount) == ("F", 0)


def test_successful_payment_without_amount_is_malformed() -> None:
    inner = {"Status": "S", "TSResultContent": {"OrderNo": "A1", "Status": "S", "Amount": ""}}
    with pytest.raises(MalformedReply, match=r"TSResultContent\.Amount"):
        to_pay_query_result(inner)


def test_pay_query_result_repr_shows_neither_the_raw_reply_nor_the_pay_token() -> None:
    inner = {
        "Status": "S",
        "PayToken": "p" * 64,
        "TSResultContent": {"OrderNo": "A1", "Status": "S", "Amount": 1},
    }
    text = repr(to_pay_query_result(inner))
    assert "TSResultContent" not in text
    assert "p" * 64 not in text


@pytest.mark.parametrize(
    ("description", "code"),
    [("E0602 – 收款方式未啟用", "E0602"), ("E00123 bad", "E00123"), ("收款方式未啟用", ""), ("", "")],
)
def test_rejection_code_is_the_leading_code_of_description(description: str, code: str) -> None:
    assert rejection_code(description) == code
