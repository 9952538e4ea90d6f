"""What the sandbox bank stores: orders, payments (PayTokens) and their callback attempts.

Plain records: sandbox.bank.Bank keeps them behind its lock and hands out copies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from core.sinopac.timefmt import BANK_TZ, to_bank_minute

__all__ = ["Attempt", "Order", "PayError", "Payment"]


class PayError(Exception):
    """A customer action the bank refuses; `status` is the HTTP status for the sandbox endpoint."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Attempt:
    """One POST of {ShopNo, PayToken} to the BackendURL and what came back."""

    number: int
    at: str
    http_status: int | None
    body: str
    acknowledged: bool
    error: str | None = None
    duplicate: bool = False


@dataclass
class Payment:
    pay_token: str
    order_no: str
    shop_no: str
    succeeded: bool
    at: datetime
    auth_code: str = ""
    callback: str = "none"  # none (no BackendURL), pending, delivered, failed, dropped
    attempts: list[Attempt] = field(default_factory=list)


@dataclass
class Order:
    shop_no: str
    order_no: str
    amount: int
    pay_type: str
    prdt_name: str
    return_url: str
    backend_url: str
    created_at: datetime
    memo: str = ""
    params: tuple[str, str, str] = ("", "", "")
    expire_date: str = ""  # ATM: yyyyMMdd (last day to pay, Taipei)
    exp_minutes: int = 10  # card: link validity
    ts_no: str = ""
    atm_pay_no: str = ""
    page_key: str = ""  # the TK of the payment page links
    state: str = "unpaid"  # unpaid, paid, declined, expired (forced by the operator)
    paid_at: datetime | None = None
    payments: list[str] = field(default_factory=list)

    def expires_at(self) -> datetime:
        if self.pay_type == "A":
            day = datetime.strptime(self.expire_date, "%Y%m%d").replace(tzinfo=BANK_TZ)
            return (day + timedelta(days=1)).astimezone(UTC)  # the whole last day, Taipei time
        return self.created_at + timedelta(minutes=self.exp_minutes)

    def expire_minute(self) -> str:
        return to_bank_minute(self.expires_at() - timedelta(minutes=1))
