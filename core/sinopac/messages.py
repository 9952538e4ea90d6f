"""What we ask the bank (PROTOCOL.md §9.1, §9.3, §9.5): typed requests and their checked messages.

`OrderCreateRequest` and `OrderQueryRequest` are the one shape shared by the `BankClient` Protocol,
QPayClient and the test fakes. Building a message checks every field against the bank's limits and
raises ValueError (naming the field, never echoing a PayToken) before anything is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from core.sinopac.fields import CONTROL_CHARS, FORBIDDEN_CHARS, PRODUCT_NAME_MAX
from core.sinopac.timefmt import to_bank_date, to_bank_minute

__all__ = [
    "MAX_AMOUNT",
    "OrderCreateRequest",
    "OrderQueryRequest",
    "create_message",
    "pay_query_message",
    "query_message",
]

MAX_AMOUNT = 999_999_999  # §9.1: at most 9 digits
_PAY_TYPES = ("A", "C")


@dataclass(frozen=True)
class OrderCreateRequest:
    """OrderCreate (§9.1): `amount` is ×100; `expire_date` for PayType A only, the card fields for C."""

    order_no: str
    amount: int
    pay_type: str
    product_name: str
    return_url: str
    backend_url: str
    expire_date: date | None = None
    card_exp_minutes: int = 30
    auto_billing: str = "Y"
    exp_billing_days: int | None = None
    memo: str | None = None
    param1: str | None = None
    param2: str | None = None
    param3: str | None = None


@dataclass(frozen=True)
class OrderQueryRequest:
    """OrderQuery (§9.3): at least one condition; windows are aware datetimes, given in pairs."""

    order_no: str | None = None
    pay_type: str | None = None
    order_from: datetime | None = None
    order_to: datetime | None = None
    pay_from: datetime | None = None
    pay_to: datetime | None = None
    pay_flag: str | None = None


def check_text(name: str, value: str, *, limit: int, required: bool = True, plain: bool = False) -> None:
    """A text field within `limit`, without control characters (and without ' " % when `plain`)."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    if required and not value.strip():
        raise ValueError(f"{name} is required")
    if len(value) > limit:
        raise ValueError(f"{name} is longer than {limit} characters")
    if CONTROL_CHARS.search(value):
        raise ValueError(f"{name} contains control characters")
    if plain and FORBIDDEN_CHARS.search(value):
        raise ValueError(f"{name} must not contain ' \" or %")


def _optional(message: dict[str, Any], key: str, name: str, value: str | None, limit: int) -> None:
    # §12.1: blank values are never sent (implementations disagree on how they are signed).
    if value is None or not value.strip():
        return
    check_text(name, value, limit=limit)
    message[key] = value


def _window(
    message: dict[str, Any], keys: tuple[str, str], names: tuple[str, str], pair: tuple[datetime | None, ...]
) -> None:
    start, end = pair
    if start is None and end is None:
        return
    if start is None or end is None:
        raise ValueError(f"{names[0]} and {names[1]} must be given together")
    for name, value in zip(names, pair, strict=True):
        if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{name} must be a timezone-aware datetime")
    if start > end:
        raise ValueError(f"{names[0]} is after {names[1]}")
    message[keys[0]] = to_bank_minute(start)
    message[keys[1]] = to_bank_minute(end)


def _check_create(req: OrderCreateRequest) -> None:
    check_text("order_no", req.order_no, limit=50, plain=True)
    amount = req.amount
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_AMOUNT:
        raise ValueError(f"amount must be a positive whole number of hundredths, at most {MAX_AMOUNT}")
    if req.pay_type not in _PAY_TYPES:
        raise ValueError("pay_type must be 'A' (ATM) or 'C' (card)")
    check_text("product_name", req.product_name, limit=PRODUCT_NAME_MAX, plain=True)
    check_text("return_url", req.return_url, limit=255)
    check_text("backend_url", req.backend_url, limit=255, required=False)


def create_message(shop_no: str, req: OrderCreateRequest) -> dict[str, Any]:
    """The OrderCreate message; ValueError for a field the bank would refuse."""
    _check_create(req)
    message: dict[str, Any] = {
        "ShopNo": shop_no,
        "OrderNo": req.order_no,
        "Amount": req.amount,
        "CurrencyID": "TWD",
        "PayType": req.pay_type,
        "PrdtName": req.product_name,
        "ReturnURL": req.return_url,
    }
    if req.backend_url.strip():
        message["BackendURL"] = req.backend_url
    expire_date = req.expire_date
    if req.pay_type == "A":
        if expire_date is None or isinstance(expire_date, datetime) or not isinstance(expire_date, date):
            raise ValueError("PayType A needs expire_date (a date, the last day to pay)")
        message["ATMParam"] = {"ExpireDate": to_bank_date(expire_date)}
    else:
        if expire_date is not None:
            raise ValueError("expire_date applies only to PayType A")
        message["CardParam"] = _card_param(req.card_exp_minutes, req.auto_billing, req.exp_billing_days)
    _optional(message, "Memo", "memo", req.memo, 30)
    _optional(message, "Param1", "param1", req.param1, 255)
    _optional(message, "Param2", "param2", req.param2, 255)
    _optional(message, "Param3", "param3", req.param3, 255)
    return message


def _card_param(exp_minutes: int, auto_billing: str, exp_billing_days: int | None) -> dict[str, Any]:
    if isinstance(exp_minutes, bool) or not isinstance(exp_minutes, int) or not 1 <= exp_minutes <= 30:
        raise ValueError("card_exp_minutes must be a whole number from 1 to 30")
    if auto_billing not in ("Y", "N"):
        raise ValueError("auto_billing must be 'Y' or 'N'")
    param: dict[str, Any] = {"AutoBilling": auto_billing, "ExpMinutes": exp_minutes}
    if auto_billing == "N":
        if (
            isinstance(exp_billing_days, bool)
            or not isinstance(exp_billing_days, int)
            or not 1 <= exp_billing_days <= 7
        ):
            raise ValueError("auto_billing 'N' needs exp_billing_days from 1 to 7")
        param["ExpBillingDays"] = exp_billing_days
    elif exp_billing_days is not None:
        raise ValueError("exp_billing_days applies only when auto_billing is 'N'")
    return param


def query_message(shop_no: str, req: OrderQueryRequest) -> dict[str, Any]:
    """The OrderQuery message; ValueError without a condition or for a malformed one."""
    message: dict[str, Any] = {"ShopNo": shop_no}
    if req.order_no is not None:
        check_text("order_no", req.order_no, limit=50, plain=True)
        message["OrderNo"] = req.order_no
    if req.pay_type is not None:
        if req.pay_type not in _PAY_TYPES:
            raise ValueError("pay_type must be 'A' or 'C'")
        message["PayType"] = req.pay_type
    _window(message, ("OrderDateTimeS", "OrderDateTimeE"), ("order_from", "order_to"),
            (req.order_from, req.order_to))
    _window(message, ("PayDateTimeS", "PayDateTimeE"), ("pay_from", "pay_to"), (req.pay_from, req.pay_to))
    if req.pay_flag is not None:
        if req.pay_flag not in ("Y", "N", "O"):
            raise ValueError("pay_flag must be 'Y', 'N' or 'O'")
        message["PayFlag"] = req.pay_flag
    if len(message) == 1:
        raise ValueError("OrderQuery needs at least one condition besides the shop")
    return message


def pay_query_message(shop_no: str, pay_token: str) -> dict[str, Any]:
    """The OrderPayQuery message; the error names the field, never the token."""
    check_text("pay_token", pay_token, limit=255)
    if pay_token != pay_token.strip() or not pay_token.isascii():
        raise ValueError("pay_token must be printable ASCII without surrounding spaces")
    return {"ShopNo": shop_no, "PayToken": pay_token}
