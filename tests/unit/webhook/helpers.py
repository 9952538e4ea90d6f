"""Fakes and helpers for the web tests: a broker and a bank that remember, settings, row counts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from core.db import transaction
from core.models import PayToken
from core.settings import Settings, load_settings
from core.sinopac.messages import OrderCreateRequest, OrderQueryRequest
from core.sinopac.types import BankCallRecord, OrderCreateResult

SHOP = "NA0001_001"  # the sandbox shop the default settings use
API_TOKEN = "test-api-token-7f3a"
TOKEN = "a" * 64
CHECKOUT_SECRET = "unit-test-checkout-secret-0123456789abcdef"


class FakeEnqueuer:
    """A broker that remembers what was sent; `up = False` makes it refuse like a dead Redis."""

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.up = True

    def send_resolve(self, token_id: int) -> bool:
        if not self.up:
            return False
        self.sent.append(token_id)
        return True

    def ping(self) -> None:
        if not self.up:
            raise ConnectionError("broker down")


@dataclass
class FakeBank:
    """OrderCreate answers as the bank would, or raises `error` (after reporting the call)."""

    error: Exception | None = None
    calls: list[OrderCreateRequest] = field(default_factory=list)
    observer: Callable[[BankCallRecord], None] | None = None

    def create_order(self, request: OrderCreateRequest) -> OrderCreateResult:
        self.calls.append(request)
        if self.observer is not None:
            outcome = "ok" if self.error is None else "transport_error"
            self.observer(BankCallRecord("OrderCreate", request.order_no, None, 5, 200, outcome))  # type: ignore[arg-type]
        if self.error is not None:
            raise self.error
        atm = request.pay_type == "A"
        return OrderCreateResult(
            order_no=request.order_no, shop_no=SHOP, ts_no="NA000100000042", amount=request.amount,
            pay_type=request.pay_type, status="S", description="S0000 – 處理成功",
            atm_pay_no="99922530174617" if atm else None,
            card_pay_url=None if atm else "https://bank.example/PayCard?TD=1&TK=2",
        )

    def query_orders(self, request: OrderQueryRequest) -> Any:
        raise AssertionError("not used by the web process")

    def pay_query(self, pay_token: str) -> Any:
        raise AssertionError("not used by the web process")

    def close(self) -> None:
        pass


def make_settings(db_url: str, **env: str) -> Settings:
    return load_settings({
        "QPAY_API_BASE_URL": "http://127.0.0.1:9/QPay.WebAPI/api/",
        "DATABASE_URL": db_url,
        "REDIS_URL": "redis://127.0.0.1:9/0",
        "PUBLIC_BASE_URL": "https://shop.example",
        "API_TOKEN": API_TOKEN,
        "CHECKOUT_SECRET": CHECKOUT_SECRET,
        **env,
    })


def count_tokens(db_url: str) -> int:
    with transaction(db_url) as session:
        return int(session.scalar(select(func.count()).select_from(PayToken)) or 0)


def token_row(db_url: str, pay_token: str) -> PayToken | None:
    with transaction(db_url) as session:
        return session.scalar(select(PayToken).where(PayToken.pay_token == pay_token))


def auth(token: str = API_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextmanager
def refusing_database() -> Iterator[Session]:
    """A unit of work whose database is down, as psycopg2 reports it."""
    raise OperationalError("BEGIN", {}, ConnectionRefusedError("connection refused"))
    yield  # pragma: no cover
