"""A scripted stand-in for the bank (the BankClient protocol), for everyone's unit tests.

Script replies per PayToken / OrderNo; an Exception in a script is raised instead of returned. The
last scripted reply repeats, so "the bank keeps saying X" needs one line. The bank is consistent with
itself: a paid OrderPayQuery result it gave makes an unscripted OrderQuery for that order report it
paid (the confirmation resolution asks for). Builders (`paid_reply`,
`query_row`, ...) make well-formed typed results with real-looking values. Thread-safe; `gate` (a
threading.Barrier) makes concurrent callers meet inside the call, to test races without sleeping.
"""

from __future__ import annotations

import itertools
import threading
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from core.logging import short_token
from core.sinopac.errors import BankRejection
from core.sinopac.messages import OrderCreateRequest, OrderQueryRequest
from core.sinopac.types import (
    BankCallRecord,
    OrderCreateResult,
    OrderQueryResult,
    OrderQueryRow,
    PayQueryResult,
    TSResult,
)

SHOP_NO = "NA0001_001"
Reply = Any  # a typed result or an Exception instance


def pay_result(
    *,
    order_no: str,
    amount: int,
    ts_no: str,
    pay_token: str = "",
    shop_no: str = SHOP_NO,
    inner_shop_no: str | None = None,
    status: str = "S",
    inner_status: str = "S",
    ap_type: str = "PayOut",
    pay_type: str = "A",
    description: str = "",
    pay_date: str = "202611251030",
    extra: dict[str, Any] | None = None,
) -> PayQueryResult:
    """An OrderPayQuery reply (PROTOCOL.md §9.5); defaults describe a successful ATM payment."""
    content = {
        "APType": ap_type, "TSNo": ts_no, "OrderNo": order_no, "ShopNo": inner_shop_no or shop_no,
        "PayType": pay_type, "Amount": str(amount), "Status": inner_status, "Description": description,
        "PayDate": pay_date, **(extra or {}),
    }
    ts = TSResult(
        ap_type=ap_type, ts_no=ts_no, order_no=order_no, shop_no=inner_shop_no or shop_no,
        pay_type=pay_type, amount=amount, status=inner_status, description=description,
        pay_date=pay_date, raw=content,
    )
    return PayQueryResult(
        shop_no=shop_no, pay_token=pay_token, date="202611251031", status=status,
        description="S0000 – 處理成功", result=ts,
        raw={"ShopNo": shop_no, "PayToken": pay_token, "Status": status, "TSResultContent": content},
    )


def query_row(
    *,
    order_no: str,
    amount: int,
    ts_no: str,
    pay_status: str = "1A400",
    pay_type: str = "A",
    pay_date: str = "202611251030",
    expire_date: str = "",
    extra: dict[str, Any] | None = None,
) -> OrderQueryRow:
    """One OrderQuery OrderList row (PROTOCOL.md §9.4); defaults describe a paid ATM order."""
    raw = {
        "OrderNo": order_no, "TSNo": ts_no, "Amount": amount, "PayType": pay_type,
        "PayStatus": pay_status, "PayDate": pay_date, "ExpireDate": expire_date, **(extra or {}),
    }
    return OrderQueryRow(
        order_no=order_no, ts_no=ts_no, amount=amount, pay_type=pay_type, pay_status=pay_status,
        pay_date=pay_date, expire_date=expire_date, raw=raw,
    )


def query_result(*rows: OrderQueryRow, shop_no: str = SHOP_NO) -> OrderQueryResult:
    return OrderQueryResult(
        shop_no=shop_no, date="202611251031", status="S", description="S0000 – 處理成功",
        orders=tuple(rows), raw={"ShopNo": shop_no},
    )


def rejection(
    code: str = "E0001", description: str = "查無資料", service: str = "OrderPayQuery"
) -> BankRejection:
    return BankRejection(f"{service}: {code}", service=service, code=code, description=description)


class FakeBankClient:
    """Implements core.sinopac.client.BankClient with scripted replies and a call log."""

    def __init__(
        self,
        *,
        shop_no: str = SHOP_NO,
        observer: Callable[[BankCallRecord], None] | None = None,
        gate: threading.Barrier | None = None,
    ) -> None:
        self.shop_no = shop_no
        self.observer = observer
        self.gate = gate
        self.created: list[OrderCreateRequest] = []
        self.pay_queries: list[str] = []
        self.order_queries: list[OrderQueryRequest] = []
        self._pay: dict[str, list[Reply]] = defaultdict(list)
        self._query: dict[str | None, list[Reply]] = defaultdict(list)
        self._create: list[Reply] = []
        self._paid: dict[str, OrderQueryRow] = {}  # what this bank's pay results said was paid
        self._ts = itertools.count(1)
        self._lock = threading.Lock()

    # -- scripting ----------------------------------------------------------------------------

    def script_pay(self, pay_token: str, *replies: Reply) -> FakeBankClient:
        self._pay[pay_token].extend(replies)
        return self

    def script_query(self, order_no: str | None, *replies: Reply) -> FakeBankClient:
        """Replies for OrderQuery by OrderNo; `None` scripts queries without an OrderNo (windows)."""
        self._query[order_no].extend(replies)
        return self

    def script_create(self, *replies: Reply) -> FakeBankClient:
        self._create.extend(replies)
        return self

    # -- the BankClient protocol --------------------------------------------------------------

    def create_order(self, request: OrderCreateRequest) -> OrderCreateResult:
        with self._lock:
            self.created.append(request)
            reply = self._create.pop(0) if self._create else self._created_ok(
                request.order_no, request.amount, request.pay_type)
        return self._answer("OrderCreate", request.order_no, reply)

    def query_orders(self, request: OrderQueryRequest) -> OrderQueryResult:
        order_no = request.order_no
        with self._lock:
            self.order_queries.append(request)
            paid = self._paid.get(order_no or "")
            default = query_result(paid) if paid is not None else query_result()
            reply = self._next(self._query[order_no], default)
        return self._answer("OrderQuery", order_no or "window", reply)

    def pay_query(self, pay_token: str) -> PayQueryResult:
        with self._lock:
            self.pay_queries.append(pay_token)
            reply = self._next(self._pay[pay_token], rejection())
            ts = reply.result if isinstance(reply, PayQueryResult) else None
            if ts is not None and ts.status == "S":
                self._paid[ts.order_no] = query_row(order_no=ts.order_no, amount=ts.amount, ts_no=ts.ts_no,
                                                    pay_type=ts.pay_type, pay_status=f"1{ts.pay_type}400")
        if self.gate is not None:
            self.gate.wait(timeout=30)
        return self._answer("OrderPayQuery", short_token(pay_token), reply)

    def close(self) -> None:
        pass

    # -- internals ----------------------------------------------------------------------------

    @staticmethod
    def _next(script: list[Reply], default: Reply) -> Reply:
        if not script:
            return default
        return script.pop(0) if len(script) > 1 else script[0]

    def _created_ok(self, order_no: str, amount: int, pay_type: str) -> OrderCreateResult:
        ts_no = f"NA0001{next(self._ts):08d}"
        return OrderCreateResult(
            order_no=order_no, shop_no=self.shop_no, ts_no=ts_no, amount=amount, pay_type=pay_type,
            status="S", description="S0000 – 處理成功",
            atm_pay_no="99922530174617" if pay_type == "A" else None,
            card_pay_url=f"https://bank.example/PayCard?TD={ts_no}" if pay_type == "C" else None,
        )

    def _answer(self, service: str, key: str, reply: Reply) -> Any:
        failed = isinstance(reply, BaseException)
        if self.observer is not None:
            outcome = "ok"
            if failed:
                outcome = {"BankRejection": "rejected"}.get(type(reply).__name__, "")
                if not outcome:
                    outcome = "transport_error" if getattr(reply, "retryable", False) else "protocol_error"
            self.observer(BankCallRecord(
                api_service=service, key=key, started_at=datetime.now(UTC), duration_ms=3,
                http_status=200, outcome=outcome, error=str(reply) if failed else None,  # type: ignore[arg-type]
            ))
        if failed:
            raise reply
        return reply
