"""OrderCreate, OrderQuery and OrderPayQuery as the bank answers them (PROTOCOL §9, §10).

Each function takes the opened request message and returns the inner reply (Status S or F);
sealing, faults and HTTP are someone else's job.
"""

from __future__ import annotations

import contextlib
import re
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlparse

from core.sinopac import paystatus
from core.sinopac.timefmt import BANK_TZ, to_bank_minute
from sandbox import bank as B
from sandbox.bank import Bank
from sandbox.records import Order, Payment

__all__ = ["OK", "dispatch", "links"]

OK = "S0000 – 處理成功"
MAX_ROWS = 300
MAX_AMOUNT = 999_999_999  # §9.1: at most 9 digits
_FORBIDDEN = re.compile(r"['\"%\x00-\x1f\x7f]")
_MINUTE = re.compile(r"^\d{12}$")
DECLINED = "E0701 – 授權失敗 (card declined)"


class Rejected(Exception):
    """A request the bank processes and refuses: Status F with this Description."""


def _field(code: str, name: str, why: str) -> Rejected:
    label = "必填欄位未填" if code == "E0102" else "欄位格式錯誤"
    return Rejected(f"{code} – {label} ({name}: {why})")


def _text(msg: dict[str, Any], name: str, limit: int, *, required: bool = False, plain: bool = False) -> str:
    value = msg.get(name)
    if value is None or value == "":
        if required:
            raise _field("E0102", name, "required")
        return ""
    if not isinstance(value, str):
        raise _field("E0101", name, "must be a string")
    if required and not value.strip():
        raise _field("E0102", name, "required")
    if len(value) > limit:
        raise _field("E0101", name, f"at most {limit} characters")
    if plain and _FORBIDDEN.search(value):
        raise _field("E0101", name, "must not contain ' \" % or control characters")
    return value


def _url(msg: dict[str, Any], name: str, *, required: bool) -> str:
    value = _text(msg, name, 255, required=required)
    if value:
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise _field("E0101", name, "must be an http(s) URL")
    return value


def _int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)  # §12.4: some clients send numbers as strings
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _field("E0101", name, f"must be a whole number from {low} to {high}")
    return value


def _obj(msg: dict[str, Any], name: str) -> dict[str, Any]:
    value = msg.get(name)
    if value is None or value == [] or value == {}:  # PHP writes an empty object as []
        raise _field("E0102", name, "required for this PayType")
    if not isinstance(value, dict):
        raise _field("E0101", name, "must be an object")
    return value


def links(base_url: str, order: Order) -> dict[str, str]:
    page = f"{base_url}/sandbox/{'atm' if order.pay_type == 'A' else 'card'}/{quote(order.order_no, safe='')}"
    query = f"?TD={order.ts_no}&TK={order.page_key}"
    if order.pay_type == "A":
        return {"WebAtmURL": page + query, "OtpURL": page + query + "&via=otp"}
    return {"CardPayURL": page + query}


def _new_order(msg: dict[str, Any], shop_no: str, now: datetime) -> Order:
    order_no = _text(msg, "OrderNo", 50, required=True, plain=True)
    if "Amount" not in msg:
        raise _field("E0102", "Amount", "required")
    amount = _int(msg["Amount"], "Amount", 1, MAX_AMOUNT)
    if msg.get("CurrencyID") != "TWD":
        raise _field("E0101" if msg.get("CurrencyID") else "E0102", "CurrencyID", "must be TWD")
    pay_type = _text(msg, "PayType", 1, required=True)
    if pay_type not in ("A", "C"):
        raise Rejected("E0602 – 收款方式未啟用 (PayType not enabled; A and C are)")
    order = Order(
        shop_no=shop_no, order_no=order_no, amount=amount, pay_type=pay_type,
        prdt_name=_text(msg, "PrdtName", 60, required=True, plain=True),
        return_url=_url(msg, "ReturnURL", required=True),
        backend_url=_url(msg, "BackendURL", required=False),
        created_at=now, memo=_text(msg, "Memo", 30),
        params=(_text(msg, "Param1", 255), _text(msg, "Param2", 255), _text(msg, "Param3", 255)),
    )
    if pay_type == "A":
        _atm(order, _obj(msg, "ATMParam"), now)
    else:
        _card(order, _obj(msg, "CardParam"))
    return order


def _atm(order: Order, param: dict[str, Any], now: datetime) -> None:
    # No ATM ceiling: the PHP SDK refuses > 3,000,000, but a real sandbox reply shows 9,440,300 (§9.5).
    expire = param.get("ExpireDate")
    if not expire:
        raise _field("E0102", "ATMParam.ExpireDate", "required")
    day = None
    if isinstance(expire, str) and len(expire) == 8 and expire.isdigit():
        with contextlib.suppress(ValueError):
            day = datetime.strptime(expire, "%Y%m%d").date()
    if day is None:
        raise _field("E0101", "ATMParam.ExpireDate", "must be a date yyyyMMdd")
    today = now.astimezone(BANK_TZ).date()
    if not today <= day <= today + timedelta(days=365):
        raise _field("E0101", "ATMParam.ExpireDate", "must be from today to a year ahead")
    order.expire_date = expire


def _card(order: Order, param: dict[str, Any]) -> None:
    auto = param.get("AutoBilling")
    if auto not in ("Y", "N"):
        raise _field("E0101" if auto else "E0102", "CardParam.AutoBilling", "must be Y or N")
    if auto == "N":
        _int(param.get("ExpBillingDays"), "CardParam.ExpBillingDays", 1, 7)
    order.exp_minutes = _int(param.get("ExpMinutes", 10), "CardParam.ExpMinutes", 1, 30)
    if param.get("PayTypeSub") not in (None, "", "ONE") or param.get("Staging") not in (None, "", "0", 0):
        raise Rejected("E0602 – 收款方式未啟用 (only PayTypeSub ONE is enabled)")


def order_create(
    bank: Bank, shop_no: str, msg: dict[str, Any], base_url: str
) -> tuple[dict[str, Any], Order | None]:
    head = {"OrderNo": msg.get("OrderNo") if isinstance(msg.get("OrderNo"), str) else "", "ShopNo": shop_no}
    try:
        order = _new_order(msg, shop_no, bank.now())
    except Rejected as exc:
        return {**head, "Status": "F", "Description": str(exc)}, None
    stored = bank.add_order(order)
    if stored is None:
        return {**head, "Status": "F", "Description": "E0201 – 訂單編號重複 (duplicate OrderNo)"}, None
    reply: dict[str, Any] = {
        **head, "TSNo": stored.ts_no, "Amount": stored.amount, "Status": "S", "Description": OK,
        "PayType": stored.pay_type,
    }
    for i, value in enumerate(stored.params, start=1):
        if value:
            reply[f"Param{i}"] = value
    page = links(base_url, stored)
    if stored.pay_type == "A":
        reply["ATMParam"] = {"AtmPayNo": stored.atm_pay_no, **page}
    else:
        reply["CardParam"] = page
    return reply, stored


def _window(msg: dict[str, Any], prefix: str) -> tuple[str, str] | None:
    start, end = msg.get(prefix + "S"), msg.get(prefix + "E")
    if start in (None, "") and end in (None, ""):
        return None
    for name, value in ((prefix + "S", start), (prefix + "E", end)):
        if not isinstance(value, str) or not _MINUTE.match(value):
            raise _field("E0101", name, "must be yyyyMMddHHmm, given with its pair")
    window = (str(start), str(end))
    if window[0] > window[1]:
        raise _field("E0101", prefix + "S", "is after " + prefix + "E")
    return window


def _row(order: Order, base_url: str, now: datetime) -> dict[str, Any]:
    status = B.pay_status(order, now)
    paid = status in paystatus.PAID_CODES
    pay_date = to_bank_minute(order.paid_at) if paid and order.paid_at else ""
    row: dict[str, Any] = {
        "OrderNo": order.order_no, "TSNo": order.ts_no, "TSDate": to_bank_minute(order.created_at),
        "ApprovedDate": pay_date if order.pay_type == "C" else "", "PayDate": pay_date,
        "Amount": order.amount, "PayType": order.pay_type, "PayStatus": status,
        "ExpireDate": order.expire_minute(), "RefundFlag": "N", "RefundStatus": "", "RefundDate": "",
        "RefundAmount": 0, "PrdtName": order.prdt_name, "Memo": order.memo,
        "Param1": order.params[0], "Param2": order.params[1], "Param3": order.params[2],
    }
    page = links(base_url, order)
    if order.pay_type == "A":
        row["ATMParam"] = {"AtmPayNo": order.atm_pay_no, **page, "BankNo": "807", "AcctNo": order.atm_pay_no}
    else:
        row["CardParam"] = {**page, "LeftCCNo": "431195" if paid else "", "RightCCNo": "1234" if paid else "",
                            "AuthCode": "", "CCExpDate": "", "CCToken": ""}
    return row


def _pay_flag(status: str) -> str:
    if status in paystatus.PAID_CODES:
        return "Y"
    return "O" if status in paystatus.OVERDUE_CODES else "N"


def order_query(bank: Bank, shop_no: str, msg: dict[str, Any], base_url: str) -> dict[str, Any]:
    now = bank.now()
    head = {"ShopNo": shop_no, "Date": to_bank_minute(now)}
    try:
        order_no = _text(msg, "OrderNo", 50)
        pay_type = _text(msg, "PayType", 1)
        if pay_type not in ("", "A", "C"):
            raise _field("E0101", "PayType", "must be A or C")
        pay_flag = _text(msg, "PayFlag", 1)
        if pay_flag not in ("", "Y", "N", "O"):
            raise _field("E0101", "PayFlag", "must be Y, N or O")
        ordered, paid = _window(msg, "OrderDateTime"), _window(msg, "PayDateTime")
        if not (order_no or pay_type or pay_flag or ordered or paid):
            raise Rejected("E0401 – 查詢條件不足 (give OrderNo, a date window, PayType or PayFlag)")
    except Rejected as exc:
        return {**head, "Status": "F", "Description": str(exc), "OrderList": []}

    def keep(o: Order) -> bool:
        if (order_no and o.order_no != order_no) or (pay_type and o.pay_type != pay_type):
            return False
        if ordered and not ordered[0] <= to_bank_minute(o.created_at) <= ordered[1]:
            return False
        status = B.pay_status(o, now)
        if paid and not (status in paystatus.PAID_CODES and o.paid_at):
            return False
        if paid and o.paid_at and not paid[0] <= to_bank_minute(o.paid_at) <= paid[1]:
            return False
        return not pay_flag or _pay_flag(status) == pay_flag

    rows = [_row(o, base_url, now) for o in bank.orders(shop_no, keep, MAX_ROWS, order_no=order_no)]
    return {**head, "Status": "S", "Description": OK, "OrderList": rows}


def _ts_result(order: Order, payment: Payment) -> dict[str, Any]:
    content: dict[str, Any] = {
        "APType": "PayOut", "TSNo": order.ts_no, "OrderNo": order.order_no, "ShopNo": order.shop_no,
        "PayType": order.pay_type, "Amount": str(order.amount),
        "Status": "S" if payment.succeeded else "F", "Description": "" if payment.succeeded else DECLINED,
        "Param1": order.params[0], "Param2": order.params[1], "Param3": order.params[2],
        "PayDate": to_bank_minute(payment.at),
    }
    if order.pay_type == "C":
        card = ("431195", "1234", "2912") if payment.succeeded else ("", "", "")
        content.update(LeftCCNo=card[0], RightCCNo=card[1], CCExpDate=card[2], CCToken="")
    return content


def order_pay_query(bank: Bank, shop_no: str, msg: dict[str, Any], base_url: str) -> dict[str, Any]:
    token = msg.get("PayToken")
    head = {"ShopNo": shop_no, "PayToken": token if isinstance(token, str) else "",
            "Date": to_bank_minute(bank.now())}
    if not isinstance(token, str) or not token:
        return {**head, "Status": "F", "Description": "E0102 – 必填欄位未填 (PayToken: required)"}
    found = bank.payment(token)
    if found is None or found[1].shop_no != shop_no:
        return {**head, "Status": "F", "Description": "E0501 – 查無資料 (unknown PayToken)"}
    order, payment = found
    return {**head, "Status": "S", "Description": OK, "TSResultContent": _ts_result(order, payment)}


def misdirected_pay_reply(bank: Bank, shop_no: str, inner: dict[str, Any], order_no: str) -> dict[str, Any]:
    """The fault `misdirect_order_no`: this reply (for the PayToken asked about) describes another order
    of the shop as paid; it is sealed and signed as usual, which the Sign cannot tell (it covers only
    the top-level scalars). The bank's own state is unchanged: OrderQuery still reports the truth."""
    order = bank.order(order_no)
    if order is None or order.shop_no != shop_no:
        return inner
    fake = Payment(pay_token=str(inner.get("PayToken", "")), order_no=order_no, shop_no=shop_no,
                   succeeded=True, at=bank.now())
    return {**inner, "TSResultContent": _ts_result(order, fake)}


def dispatch(
    bank: Bank, service: str, shop_no: str, msg: dict[str, Any], base_url: str
) -> tuple[dict[str, Any], Order | None]:
    """Run one service; returns the inner reply and, for a new order, the stored order."""
    if msg.get("ShopNo") != shop_no:
        why = "E0301 – ShopNo 不符 (the message's ShopNo differs from the envelope's)"
        return {"ShopNo": shop_no, "Status": "F", "Description": why}, None
    if service == "OrderCreate":
        return order_create(bank, shop_no, msg, base_url)
    if service == "OrderQuery":
        return order_query(bank, shop_no, msg, base_url), None
    return order_pay_query(bank, shop_no, msg, base_url), None

