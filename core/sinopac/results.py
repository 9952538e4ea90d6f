"""Verified inner replies turned into the typed results of core.sinopac.types (PROTOCOL.md §9).

The bank is inconsistent about types (Amount is a number in OrderCreate/OrderQuery and a string in
OrderPayQuery, §12.4); here every amount becomes an int and every text field a str, once.
"""

from __future__ import annotations

from typing import Any

from core.sinopac.errors import MalformedReply
from core.sinopac.types import OrderCreateResult, OrderQueryResult, OrderQueryRow, PayQueryResult, TSResult

__all__ = ["parse_amount", "to_create_result", "to_pay_query_result", "to_query_result"]

_MAX_AMOUNT = 10**12


def parse_amount(value: Any, *, service: str, where: str) -> int:
    """An Amount (×100) as int, whether the bank sent 123400, "123400" or 123400.0."""
    if isinstance(value, bool):
        raise MalformedReply(f"{service}: {where} is not an amount", service=service)
    if isinstance(value, int):
        amount = value
    elif isinstance(value, float) and value.is_integer():
        amount = int(value)
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        amount = int(value.strip())
    else:
        raise MalformedReply(f"{service}: {where} is not a whole amount", service=service)
    if not 0 <= amount < _MAX_AMOUNT:
        raise MalformedReply(f"{service}: {where} is out of range", service=service)
    return amount


def _text(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _obj(obj: dict[str, Any], name: str, service: str) -> dict[str, Any]:
    value = obj.get(name)
    if value is None or value == []:  # PHP-style encoders write an empty object as []
        return {}
    if not isinstance(value, dict):
        raise MalformedReply(f"{service}: {name} is not an object", service=service)
    return value


def _required(obj: dict[str, Any], name: str, service: str, where: str = "reply") -> str:
    value = _text(obj, name).strip()
    if not value:
        raise MalformedReply(f"{service}: {where} lacks {name}", service=service)
    return value


def to_create_result(inner: dict[str, Any], *, pay_type: str) -> OrderCreateResult:
    """OrderCreate (§9.2): a success must carry the payment instructions for its PayType."""
    service = "OrderCreate"
    reply_pay_type = _text(inner, "PayType") or pay_type
    atm = _obj(inner, "ATMParam", service)
    card = _obj(inner, "CardParam", service)
    result = OrderCreateResult(
        order_no=_required(inner, "OrderNo", service),
        shop_no=_text(inner, "ShopNo"),
        ts_no=_required(inner, "TSNo", service),
        amount=parse_amount(inner.get("Amount"), service=service, where="Amount"),
        pay_type=reply_pay_type,
        status=_text(inner, "Status"),
        description=_text(inner, "Description"),
        atm_pay_no=_text(atm, "AtmPayNo") or None,
        web_atm_url=_text(atm, "WebAtmURL") or None,
        otp_url=_text(atm, "OtpURL") or None,
        card_pay_url=_text(card, "CardPayURL") or None,
        raw=inner,
    )
    if reply_pay_type == "A" and not result.atm_pay_no:
        raise MalformedReply(f"{service}: ATM reply lacks ATMParam.AtmPayNo", service=service)
    if reply_pay_type == "C" and not result.card_pay_url:
        raise MalformedReply(f"{service}: card reply lacks CardParam.CardPayURL", service=service)
    return result


def _row(row: Any, index: int) -> OrderQueryRow:
    service = "OrderQuery"
    where = f"OrderList[{index}]"
    if not isinstance(row, dict):
        raise MalformedReply(f"{service}: {where} is not an object", service=service)
    return OrderQueryRow(
        order_no=_required(row, "OrderNo", service, where),
        ts_no=_text(row, "TSNo"),
        amount=parse_amount(row.get("Amount"), service=service, where=f"{where}.Amount"),
        pay_type=_text(row, "PayType"),
        pay_status=_text(row, "PayStatus"),
        pay_date=_text(row, "PayDate").strip(),
        expire_date=_text(row, "ExpireDate").strip(),
        ts_date=_text(row, "TSDate").strip(),
        refund_flag=_text(row, "RefundFlag"),
        raw=row,
    )


def to_query_result(inner: dict[str, Any]) -> OrderQueryResult:
    """OrderQuery (§9.4): every OrderList row typed; a missing or null list means no orders."""
    rows = inner.get("OrderList")
    if rows is None:
        rows = []
    if not isinstance(rows, list):
        raise MalformedReply("OrderQuery: OrderList is not a list", service="OrderQuery")
    return OrderQueryResult(
        shop_no=_text(inner, "ShopNo"),
        date=_text(inner, "Date"),
        status=_text(inner, "Status"),
        description=_text(inner, "Description"),
        orders=tuple(_row(row, i) for i, row in enumerate(rows)),
        raw=inner,
    )


def _ts_result(content: dict[str, Any]) -> TSResult:
    service = "OrderPayQuery"
    status = _text(content, "Status")
    raw_amount = content.get("Amount")
    if status != "S" and raw_amount in (None, ""):
        amount = 0  # a failed payment may carry no amount; a successful one always must
    else:
        amount = parse_amount(raw_amount, service=service, where="TSResultContent.Amount")
    return TSResult(
        ap_type=_text(content, "APType"),
        ts_no=_text(content, "TSNo"),
        order_no=_required(content, "OrderNo", service, "TSResultContent"),
        shop_no=_text(content, "ShopNo"),
        pay_type=_text(content, "PayType"),
        amount=amount,
        status=status,
        description=_text(content, "Description"),
        pay_date=_text(content, "PayDate").strip(),
        raw=content,
    )


def to_pay_query_result(inner: dict[str, Any]) -> PayQueryResult:
    """OrderPayQuery (§9.5); `result` is None when the bank sent no TSResultContent."""
    content = _obj(inner, "TSResultContent", "OrderPayQuery")
    return PayQueryResult(
        shop_no=_text(inner, "ShopNo"),
        pay_token=_text(inner, "PayToken"),
        date=_text(inner, "Date"),
        status=_text(inner, "Status"),
        description=_text(inner, "Description"),
        result=_ts_result(content) if content else None,
        raw=inner,
    )
