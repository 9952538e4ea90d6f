"""Races on real PostgreSQL: real threads, each with its own session and transaction, a fake bank.

The fake bank's gate (a threading.Barrier) holds every caller inside the bank call until all have
read the token, so the conditional UPDATEs really do meet.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import TypeVar

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.db import OneStatement, dispose_engines, make_engine, statement
from core.models import Order, OrderEvent, PayToken
from core.services.callbacks import CallbackRecord, record_callback
from core.services.orders import NewOrder, create_order
from core.services.resolution import resolve_token
from core.services.settlement import SettleOutcome, settle_from_query_row
from core.settings import Settings, load_settings
from tests.support.fakes import FakeBankClient, pay_result, query_row

pytestmark = pytest.mark.integration

THREADS = 20
_CREATOR = FakeBankClient()  # one bank for all order creations: its TSNo counter stays unique
T = TypeVar("T")


@pytest.fixture
def maker(pg_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(pg_url, pool_size=THREADS + 5, max_overflow=0)
    yield sessionmaker(bind=engine, expire_on_commit=False)
    engine.dispose()


@pytest.fixture
def settings() -> Settings:
    return load_settings({})


def _in_threads(n: int, work: Callable[[int], T]) -> list[T]:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(work, range(n)))


def _order_and_token(maker: sessionmaker[Session], settings: Settings, order_no: str,
                     token: str) -> tuple[Order, int]:
    with maker.begin() as s:
        order = create_order(s, _CREATOR, settings, NewOrder(500, "A", "測試", order_no=order_no))
        token_id = record_callback(s, shop_no="NA0001_001", pay_token=token, source="backend").token_id
    return order, token_id


def _events(maker: sessionmaker[Session], order_no: str) -> list[tuple[str | None, str]]:
    with maker() as s:
        return [(e.from_status, e.to_status) for e in s.scalars(
            select(OrderEvent).where(OrderEvent.order_no == order_no).order_by(OrderEvent.id))]


@pytest.mark.parametrize(("amount_delta", "kind", "status"), [(0, "settled", "paid"),
                                                                (1, "review", "needs_review")])
def test_twenty_resolvers_of_one_token_make_one_transition(
    maker: sessionmaker[Session], settings: Settings, amount_delta: int, kind: str, status: str
) -> None:
    token = "a1" * 32
    order, token_id = _order_and_token(maker, settings, "R001", token)
    bank = FakeBankClient(gate=threading.Barrier(THREADS))
    bank.script_pay(token, pay_result(order_no="R001", amount=order.amount + amount_delta,
                                      ts_no=order.ts_no or "", pay_token=token))

    def resolve(_: int) -> str:
        with maker.begin() as s:
            return resolve_token(s, bank, settings, token_id).kind

    kinds = _in_threads(THREADS, resolve)

    assert len(bank.pay_queries) == THREADS  # all of them really raced past the token read
    assert sorted(kinds) == sorted([kind] + ["noop"] * (THREADS - 1))
    assert _events(maker, "R001") == [(None, "pending"), ("pending", status)]
    with maker() as s:
        assert s.scalar(select(Order.status).where(Order.order_no == "R001")) == status
        assert s.scalar(select(PayToken.state).where(PayToken.id == token_id)) == "resolved"


def test_resolvers_reading_the_token_as_one_statement_make_one_transition(
    maker: sessionmaker[Session], settings: Settings, pg_url: str
) -> None:
    # Given twenty resolvers as the worker runs them: the token read as one autocommit statement
    # (core.db.statement), the write in a transaction of its own
    token = "b2" * 32
    order, token_id = _order_and_token(maker, settings, "R009", token)
    bank = FakeBankClient(gate=threading.Barrier(THREADS))
    bank.script_pay(token, pay_result(order_no="R009", amount=order.amount, ts_no=order.ts_no or "",
                                      pay_token=token))

    def reads() -> AbstractContextManager[OneStatement]:
        return statement(pg_url)

    try:
        kinds = _in_threads(THREADS, lambda _: resolve_token(maker.begin, bank, settings, token_id,
                                                             reads=reads).kind)
        missing = resolve_token(maker.begin, bank, settings, 987654, reads=reads)
    finally:
        dispose_engines()

    # Then one settles it, the others find nothing left to do, and an unknown id is a no-op
    assert len(bank.pay_queries) == THREADS
    assert sorted(kinds) == sorted(["settled"] + ["noop"] * (THREADS - 1))
    assert _events(maker, "R009") == [(None, "pending"), ("pending", "paid")]
    assert (missing.kind, missing.error) == ("noop", "no such token")


def _race_callback_and_sweep(
    maker: sessionmaker[Session], settings: Settings, order_no: str, token: str
) -> tuple[str, str]:
    order, token_id = _order_and_token(maker, settings, order_no, token)
    meet = threading.Barrier(2)
    bank = FakeBankClient(gate=meet)
    bank.script_pay(token, pay_result(order_no=order_no, amount=order.amount, ts_no=order.ts_no or "",
                                      pay_token=token))
    row = query_row(order_no=order_no, amount=order.amount, ts_no=order.ts_no or "")

    def callback() -> str:
        with maker.begin() as s:
            return resolve_token(s, bank, settings, token_id).kind

    def sweep() -> SettleOutcome:
        with maker.begin() as s:
            meet.wait(timeout=30)  # released together with the callback's bank call
            return settle_from_query_row(s, settings, row, source="sweep")

    with ThreadPoolExecutor(2) as pool:
        by_callback, by_sweep = pool.submit(callback), pool.submit(sweep)
        return by_callback.result(), by_sweep.result().kind


def test_a_callback_and_a_sweep_settling_one_order_at_once_make_one_transition(
    maker: sessionmaker[Session], settings: Settings
) -> None:
    for round_no in range(5):
        order_no = f"S00{round_no}"

        results = _race_callback_and_sweep(maker, settings, order_no, f"{round_no:02d}" * 32)

        assert results in {("settled", "noop"), ("noop", "paid")}
        assert _events(maker, order_no) == [(None, "pending"), ("pending", "paid")]


def test_twenty_concurrent_deliveries_of_a_new_token_make_one_row(maker: sessionmaker[Session]) -> None:
    token = "b2" * 32
    start = threading.Barrier(THREADS)

    def deliver(_: int) -> CallbackRecord:
        with maker.begin() as s:
            start.wait(timeout=30)
            return record_callback(s, shop_no="NA0001_001", pay_token=token, source="backend")

    records = _in_threads(THREADS, deliver)

    with maker() as s:
        assert s.scalar(select(func.count()).select_from(PayToken)) == 1
        assert s.scalar(select(PayToken.receipts)) == THREADS
    assert sum(r.created for r in records) == 1
    assert len({r.token_id for r in records}) == 1
