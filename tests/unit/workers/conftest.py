"""Fixtures for the workers' unit tests: a SQLite database, settings, orders and a fake bank."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from sqlalchemy.orm import Session

from core.db import dispose_engines, make_engine, transaction
from core.models import Base, Order, PayToken
from core.settings import Settings, load_settings
from core.sinopac.errors import BankTimeout
from core.sinopac.messages import OrderCreateRequest, OrderQueryRequest
from core.sinopac.timefmt import to_bank_minute
from core.sinopac.types import OrderCreateResult, OrderQueryResult, OrderQueryRow

NOW = datetime(2026, 3, 2, 4, 30, 15, tzinfo=UTC)  # 12:30 in Taipei


@pytest.fixture
def db_url(tmp_path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()
    yield url
    dispose_engines()


@pytest.fixture
def uow(db_url: str) -> Callable[[], AbstractContextManager[Session]]:
    return partial(transaction, db_url)


@pytest.fixture
def settings(db_url: str) -> Settings:
    return load_settings({"DATABASE_URL": db_url, "SWEEP_GRACE": "120", "SWEEP_WINDOW_OVERLAP": "600",
                          "SWEEP_BATCH": "50", "CHECK_SCHEDULE": "60,300"})


def add_order(uow, order_no: str, *, pay_type: str = "A", amount: int = 50000, status: str = "pending",
              next_check_at: datetime | None = None, expires_at: datetime | None = None,
              ts_no: str | None = None) -> None:
    with uow() as s:
        s.add(Order(shop_no="NA0001_001", order_no=order_no, amount=amount, currency="TWD", pay_type=pay_type,
                    product_name="tea", status=status, ts_no=ts_no,
                    next_check_at=next_check_at or NOW + timedelta(hours=1),
                    expires_at=expires_at or NOW + timedelta(days=3), created_at=NOW - timedelta(hours=2)))


def add_token(uow, token: str, *, received: datetime, enqueued: datetime | None = None,
              state: str = "received") -> int:
    with uow() as s:
        row = PayToken(shop_no="NA0001_001", pay_token=token, source="backend", first_received_at=received,
                       last_received_at=received, last_enqueued_at=enqueued, state=state)
        s.add(row)
        s.flush()
        return row.id


def status_of(uow, order_no: str) -> str:
    with uow() as s:
        return s.query(Order).filter_by(order_no=order_no).one().status


def row(order_no: str, *, pay_status: str = "1A400", amount: int = 50000, pay_type: str = "A",
        ts_no: str = "", pay_date: datetime | None = NOW - timedelta(minutes=30),
        expire_date: str = "") -> OrderQueryRow:
    return OrderQueryRow(order_no=order_no, ts_no=ts_no or f"TS{order_no}", amount=amount, pay_type=pay_type,
                         pay_status=pay_status, pay_date=to_bank_minute(pay_date) if pay_date else "",
                         expire_date=expire_date)


@dataclass
class FakeBank:
    """OrderQuery answered from a list of rows; windows filter on PayDate like the bank (minutes)."""

    rows: list[OrderQueryRow] = field(default_factory=list)
    max_rows: int = 300
    down: bool = False
    calls: list[OrderQueryRequest] = field(default_factory=list)

    def query_orders(self, request: OrderQueryRequest) -> OrderQueryResult:
        self.calls.append(request)
        if self.down:
            raise BankTimeout("OrderQuery: read timed out", service="OrderQuery")
        if request.order_no:
            chosen = [r for r in self.rows if r.order_no == request.order_no]
        else:
            lo, hi = to_bank_minute(request.pay_from), to_bank_minute(request.pay_to)
            chosen = [r for r in self.rows
                      if r.pay_date and lo <= r.pay_date <= hi and r.pay_status == "1A400"]
        return OrderQueryResult(shop_no="NA0001_001", date="", status="S", description="S0000",
                                orders=tuple(chosen[: self.max_rows]))

    def pay_query(self, pay_token: str):  # pragma: no cover - the sweep never resolves tokens itself
        raise AssertionError("the sweep must enqueue tokens, not resolve them")

    def create_order(self, request: OrderCreateRequest) -> OrderCreateResult:  # pragma: no cover
        raise AssertionError("the sweep never creates orders")

    def close(self) -> None:
        pass
