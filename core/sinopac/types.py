"""Typed results of the bank calls; amounts are integers ×100 whatever JSON type the bank used."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

PayType = Literal["A", "C"]


@dataclass(frozen=True, kw_only=True)
class BankReply:
    """What every inner reply (and TSResultContent) carries: the shop, Status and its Description."""

    shop_no: str
    status: str
    description: str
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class OrderFacts:
    """One order as the bank names it, in every reply that speaks of one: OrderNo, TSNo, Amount, PayType."""

    order_no: str
    ts_no: str
    amount: int
    pay_type: str


@dataclass(frozen=True, kw_only=True)
class OrderCreateResult(OrderFacts, BankReply):
    atm_pay_no: str | None = None
    web_atm_url: str | None = None
    otp_url: str | None = None
    card_pay_url: str | None = None


@dataclass(frozen=True, kw_only=True)
class OrderQueryRow(OrderFacts):
    pay_status: str  # e.g. 1A200 ATM unpaid, 1A400 ATM paid, 1C400 card captured
    pay_date: str  # yyyyMMddHHmm (Asia/Taipei) or ""
    expire_date: str  # yyyyMMddHHmm or ""
    ts_date: str = ""
    refund_flag: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class OrderQueryResult(BankReply):
    date: str
    orders: tuple[OrderQueryRow, ...]


@dataclass(frozen=True, kw_only=True)
class TSResult(OrderFacts, BankReply):
    """TSResultContent of OrderPayQuery: what the bank says happened to one payment."""

    ap_type: str
    pay_date: str


@dataclass(frozen=True, kw_only=True)
class PayQueryResult(BankReply):
    pay_token: str = field(repr=False)  # a full PayToken stays out of logs
    date: str
    result: TSResult | None


@dataclass(frozen=True)
class BankCallRecord:
    """What one call to the bank cost and how it ended; the client reports it to an observer."""

    api_service: str
    key: str  # OrderNo, or a shortened PayToken
    started_at: Any  # datetime, UTC
    duration_ms: int
    http_status: int | None
    outcome: Literal["ok", "rejected", "transport_error", "protocol_error"]
    error: str | None = None
    shop_no: str = ""
    key_set: str = ""  # which key set verified the reply: "active" or "next" ("" when none did)


# Who hears of every bank call (the bank_calls table, metrics); it must not raise, and is ignored if it does.
Observer = Callable[[BankCallRecord], None]
