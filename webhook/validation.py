"""Pure parsing and validation of what arrives over HTTP: bytes and dicts in, typed values out.

Nothing here does I/O or knows Flask, so every rule has a fast test. A failure is an
`InvalidInput` whose message names the problem (and the field, when there is one).
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from core.services.orders import MAX_CARD_EXP_MINUTES, MAX_EXPIRE_DAYS, MIN_CARD_EXP_MINUTES, NewOrder
from core.sinopac.fields import (
    ORDER_NO_RE,
    PAY_TOKEN_RE,
    PRODUCT_NAME_MAX,
    SHOP_NO_RE,
    is_valid_product_name,
)

MAX_CALLBACK_BODY = 4096  # bytes; a real callback is ~100
MAX_API_BODY = 16384
ATM_MAX_TWD = 30_000  # PROTOCOL §9.1: the bank rejects ATM orders above NT$30,000
CARD_MAX_TWD = 1_000_000  # our own ceiling; the wire limit is 9 digits of hundredths
# expire_days 0 = pay by the end of today (Taipei); expire_minutes is CardParam.ExpMinutes (PROTOCOL §9.1)
MIN_EXPIRE_MINUTES, MAX_EXPIRE_MINUTES = MIN_CARD_EXP_MINUTES, MAX_CARD_EXP_MINUTES
PAY_TYPES = ("A", "C")
ORDER_FIELDS = frozenset(
    {"amount", "pay_type", "product_name", "order_no", "expire_days", "expire_minutes", "shop_no"}
)


class InvalidInput(ValueError):
    """Bad input; `status` is the HTTP status to answer, `field` the offending field if any."""

    def __init__(self, error: str, *, field: str | None = None, status: int = 400) -> None:
        super().__init__(error)
        self.error = error
        self.field = field
        self.status = status


@dataclass(frozen=True)
class CallbackInput:
    shop_no: str
    pay_token: str


def check_size(raw: bytes, limit: int) -> None:
    if len(raw) > limit:
        raise InvalidInput(f"body larger than {limit} bytes", status=413)


def _text(raw: bytes) -> str:
    """UTF-8, one leading BOM tolerated: what the "utf-8-sig" codec does, without its Python-level
    decoder object per call."""
    try:
        return (raw[3:] if raw.startswith(codecs.BOM_UTF8) else raw).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("body is not valid UTF-8") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# json.loads with parse_constant builds a decoder per call; this one is shared (it keeps no state).
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def decode_json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or InvalidInput naming what is wrong with it."""
    text = _text(raw)
    if not text.strip():
        raise InvalidInput("body is empty; expected a JSON object")
    try:
        value = _DECODER.decode(text)
    except (ValueError, RecursionError):
        raise InvalidInput("body is not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidInput("body must be a JSON object")
    return value


def decode_form(raw: bytes) -> dict[str, str]:
    """An application/x-www-form-urlencoded body; a field given twice is an error, not a guess."""
    text = _text(raw)
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=64,
                          errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("body is not a valid form") from None
    out: dict[str, str] = {}
    for key, value in pairs:
        if key in out:
            raise InvalidInput(f"{key} given more than once", field=key)
        out[key] = value
    return out


def validate_callback(data: Mapping[str, Any], shops: Collection[str]) -> CallbackInput:
    """ShopNo must be one of ours and PayToken 1–128 of [0-9A-Za-z_-]; other fields are ignored."""
    shop_no = data.get("ShopNo")
    pay_token = data.get("PayToken")
    if shop_no is None:
        raise InvalidInput("ShopNo is missing", field="ShopNo")
    if not isinstance(shop_no, str):
        raise InvalidInput("ShopNo must be a string", field="ShopNo")
    if pay_token is None:
        raise InvalidInput("PayToken is missing", field="PayToken")
    if not isinstance(pay_token, str):
        raise InvalidInput("PayToken must be a string", field="PayToken")
    if shop_no not in shops:
        raise InvalidInput("ShopNo is not a shop configured here", field="ShopNo")
    if not PAY_TOKEN_RE.fullmatch(pay_token):
        raise InvalidInput("PayToken must be 1-128 characters of 0-9 A-Z a-z _ -", field="PayToken")
    return CallbackInput(shop_no=shop_no, pay_token=pay_token)


def parse_backend_body(raw: bytes, mimetype: str, shops: Collection[str]) -> CallbackInput:
    """BackendURL: JSON whatever the Content-Type says; a urlencoded form only if it says so."""
    check_size(raw, MAX_CALLBACK_BODY)
    try:
        data: Mapping[str, Any] = decode_json_object(raw)
    except InvalidInput:
        if mimetype != "application/x-www-form-urlencoded":
            raise
        data = decode_form(raw)
    return validate_callback(data, shops)


def is_valid_pay_token(value: str) -> bool:
    return PAY_TOKEN_RE.fullmatch(value) is not None


def _int_field(data: Mapping[str, Any], name: str) -> int:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name} must be a whole number (JSON integer)", field=name)
    return value


def validate_order_request(data: Mapping[str, Any]) -> NewOrder:
    """POST /api/orders: every rule names its field; unknown fields are refused (typos cost money)."""
    unknown = sorted(set(data) - ORDER_FIELDS)
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]}", field=unknown[0])
    for name in ("amount", "pay_type", "product_name"):
        if name not in data or data[name] is None:
            raise InvalidInput(f"{name} is required", field=name)
    pay_type = data["pay_type"]
    if pay_type not in PAY_TYPES:
        raise InvalidInput("pay_type must be 'A' (ATM) or 'C' (card)", field="pay_type")
    amount = _int_field(data, "amount")
    ceiling = ATM_MAX_TWD if pay_type == "A" else CARD_MAX_TWD
    if not 1 <= amount <= ceiling:
        raise InvalidInput(f"amount must be 1..{ceiling} TWD for pay_type {pay_type}", field="amount")
    name = _product_name(data["product_name"])
    order_no = data.get("order_no")
    if order_no is not None and (not isinstance(order_no, str) or not ORDER_NO_RE.fullmatch(order_no)):
        raise InvalidInput("order_no must be 1-50 characters of A-Z a-z 0-9 _ -", field="order_no")
    expire_days, expire_minutes = _expiry(data, pay_type)
    shop_no = data.get("shop_no")
    if shop_no is not None and (not isinstance(shop_no, str) or not SHOP_NO_RE.fullmatch(shop_no)):
        raise InvalidInput("shop_no must be 1-20 characters of A-Z a-z 0-9 _", field="shop_no")
    return NewOrder(amount, pay_type, name, order_no, expire_days, expire_minutes, shop_no)


def _product_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > PRODUCT_NAME_MAX:
        raise InvalidInput("product_name must be a string of 1-60 characters", field="product_name")
    if not is_valid_product_name(name):
        raise InvalidInput("product_name must not contain ' \" % or control characters", field="product_name")
    return name


def _expiry(data: Mapping[str, Any], pay_type: str) -> tuple[int | None, int | None]:
    """expire_days (ATM only) and expire_minutes (card only), each within its range, or None."""
    expire_days: int | None = None
    if data.get("expire_days") is not None:
        if pay_type != "A":
            raise InvalidInput("expire_days applies only to pay_type A", field="expire_days")
        expire_days = _int_field(data, "expire_days")
        if not 0 <= expire_days <= MAX_EXPIRE_DAYS:
            raise InvalidInput(f"expire_days must be 0..{MAX_EXPIRE_DAYS}", field="expire_days")
    expire_minutes: int | None = None
    if data.get("expire_minutes") is not None:
        if pay_type != "C":
            raise InvalidInput("expire_minutes applies only to pay_type C", field="expire_minutes")
        expire_minutes = _int_field(data, "expire_minutes")
        if not MIN_EXPIRE_MINUTES <= expire_minutes <= MAX_EXPIRE_MINUTES:
            raise InvalidInput(f"expire_minutes must be {MIN_EXPIRE_MINUTES}..{MAX_EXPIRE_MINUTES}",
                               field="expire_minutes")
    return expire_days, expire_minutes


def parse_return_body(raw: bytes, mimetype: str, shops: Collection[str]) -> CallbackInput:
    """ReturnURL: the browser's urlencoded form, or a JSON object (by Content-Type or by its first byte)."""
    check_size(raw, MAX_CALLBACK_BODY)
    if mimetype == "application/json" or raw.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        data: Mapping[str, Any] = decode_json_object(raw)
    else:
        data = decode_form(raw)
    return validate_callback(data, shops)
