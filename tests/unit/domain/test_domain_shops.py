"""Several shops in one deployment, in the domain: orders unique per (shop, OrderNo), each token
resolved with its own shop's client, and a sweep whose shops do not share their trouble."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.models import Order, OrderEvent, PayToken, SweepRun
from core.services.callbacks import record_callback
from core.services.orders import NewOrder, OrderValidationError, create_order, get_order, order_history
from core.services.resolution import resolve_token
from core.services.sweep import run_sweep
from core.settings import Settings, load_settings
from core.sinopac.client import BankClient
from core.sinopac.errors import BankHTTPError
from tests.support.fakes import FakeBankClient, pay_result, query_result, query_row

from .conftest import NOW

ONE, TWO = "NA0001_001", "NA0001_002"
TOKEN_1, TOKEN_2 = "1" * 64, "2" * 64


def _keys(digit: str, key_id: str) -> dict[str, str]:
    return {"a1": digit * 16, "a2": "0" * 15 + digit, "b1": "A" * 16, "b2": digit * 15 + "B",
            "key_id": key_id}


@pytest.fixture
def two_shops() -> Settings:
    shops = [{"shop_no": ONE, "name": "Brand one", **_keys("1", "k-one")},
             {"shop_no": TWO, **_keys("2", "k-two")}]
    return load_settings({"PUBLIC_BASE_URL": "https://shop.example", "CHECK_SCHEDULE": "60,300,900",
                          "QPAY_SHOPS": json.dumps(shops)})


@pytest.fixture
def banks() -> dict[str, FakeBankClient]:
    two = FakeBankClient(shop_no=TWO)
    two._ts = itertools.count(5000)  # TSNos are the bank's, unique across its shops
    return {ONE: FakeBankClient(shop_no=ONE), TWO: two}


def _order(session: Session, bank: BankClient, settings: Settings, shop_no: str | None,
           order_no: str = "SAME1", amount: int = 500) -> Order:
    order = create_order(session, bank, settings,
                         NewOrder(amount, "A", "商品", order_no=order_no, shop_no=shop_no), now=NOW)
    session.flush()
    return order


def test_two_shops_may_use_the_same_order_no(session: Session, two_shops: Settings,
                                             banks: dict[str, FakeBankClient]) -> None:
    first = _order(session, banks[ONE], two_shops, ONE)
    second = _order(session, banks[TWO], two_shops, TWO, amount=700)
    assert (first.shop_no, second.shop_no) == (ONE, TWO)
    assert get_order(session, "SAME1", TWO) is second
    assert [e.shop_no for e in order_history(session, "SAME1", ONE)] == [ONE]
    with pytest.raises(OrderValidationError, match="already exists"):
        _order(session, banks[TWO], two_shops, TWO)


@pytest.mark.parametrize(("shop_no", "message"), [(None, "is required"), ("NA0009_001", "is not a shop")])
def test_with_several_shops_an_order_names_a_configured_shop(
    session: Session, two_shops: Settings, banks: dict[str, FakeBankClient], shop_no: str | None, message: str
) -> None:
    with pytest.raises(OrderValidationError, match=message) as info:
        _order(session, banks[ONE], two_shops, shop_no)
    assert info.value.field == "shop_no"
    assert banks[ONE].created == []  # refused before any bank call


def test_the_client_must_be_the_order_shops(session: Session, two_shops: Settings,
                                             banks: dict[str, FakeBankClient]) -> None:
    with pytest.raises(ValueError, match="not shop NA0001_002's"):
        _order(session, banks[ONE], two_shops, TWO)


def test_a_single_shop_deployment_needs_no_shop_no(session: Session, settings: Settings) -> None:
    order = _order(session, FakeBankClient(), settings, None)
    assert order.shop_no == settings.shop_no


def test_each_token_is_resolved_with_its_own_shops_client_and_settles_that_shops_order(
    session: Session, two_shops: Settings, banks: dict[str, FakeBankClient]
) -> None:
    one = _order(session, banks[ONE], two_shops, ONE)
    two = _order(session, banks[TWO], two_shops, TWO, amount=700)
    banks[ONE].script_pay(TOKEN_1, pay_result(order_no="SAME1", amount=one.amount, ts_no=one.ts_no or "",
                                              pay_token=TOKEN_1, shop_no=ONE))
    banks[TWO].script_pay(TOKEN_2, pay_result(order_no="SAME1", amount=two.amount, ts_no=two.ts_no or "",
                                              pay_token=TOKEN_2, shop_no=TWO))
    ids = [record_callback(session, shop_no=shop, pay_token=tok, source="backend", now=NOW).token_id
           for shop, tok in ((TWO, TOKEN_2), (ONE, TOKEN_1))]

    outcomes = [resolve_token(session, banks.__getitem__, two_shops, token_id, now=NOW) for token_id in ids]

    assert [o.kind for o in outcomes] == ["settled", "settled"]
    assert (banks[ONE].pay_queries, banks[TWO].pay_queries) == ([TOKEN_1], [TOKEN_2])
    session.refresh(one)
    session.refresh(two)
    assert (one.status, one.pay_token, two.status, two.pay_token) == ("paid", TOKEN_1, "paid", TOKEN_2)


def test_a_reply_naming_the_other_shop_is_not_paid(session: Session, two_shops: Settings,
                                                   banks: dict[str, FakeBankClient]) -> None:
    one = _order(session, banks[ONE], two_shops, ONE)
    banks[ONE].script_pay(TOKEN_1, pay_result(order_no="SAME1", amount=one.amount, ts_no=one.ts_no or "",
                                              pay_token=TOKEN_1, shop_no=TWO))
    token_id = record_callback(session, shop_no=ONE, pay_token=TOKEN_1, source="backend", now=NOW).token_id
    outcome = resolve_token(session, banks.__getitem__, two_shops, token_id, now=NOW)
    assert outcome.kind == "review"
    assert "is not ours (shop NA0001_001)" in (outcome.error or "")


def test_a_token_of_a_shop_no_longer_configured_waits_for_it(session: Session, two_shops: Settings,
                                                             banks: dict[str, FakeBankClient]) -> None:
    token_id = record_callback(session, shop_no="NA0009_001", pay_token=TOKEN_1, source="backend").token_id

    def client_for(shop_no: str) -> BankClient:
        return banks[two_shops.shop_for(shop_no).shop_no]

    outcome = resolve_token(session, client_for, two_shops, token_id, now=NOW)
    assert outcome.kind == "transient"
    token = session.get_one(PayToken, token_id)
    session.refresh(token)
    assert (token.state, token.last_error) == ("received", "shop NA0009_001 is not configured")


@contextmanager
def _uow(maker: sessionmaker[Session]) -> Iterator[Session]:
    with maker.begin() as session:
        yield session


def test_the_sweep_reconciles_every_shop_and_one_shops_outage_stops_only_that_shop(
    maker: sessionmaker[Session], two_shops: Settings, banks: dict[str, FakeBankClient]
) -> None:
    with maker.begin() as session:
        one = _order(session, banks[ONE], two_shops, ONE, order_no="A1")
        two = _order(session, banks[TWO], two_shops, TWO, order_no="B1", amount=700)
        rows = {o.shop_no: query_row(order_no=o.order_no, amount=o.amount, ts_no=o.ts_no or "")
                for o in (one, two)}
    down = BankHTTPError("OrderQuery: Order answered HTTP 503", service="OrderQuery", status=503)
    banks[ONE].script_query(None, down).script_query("A1", down)
    banks[TWO].script_query(None, query_result(rows[TWO], shop_no=TWO))
    uow: Callable[[], contextmanager[Session]] = lambda: _uow(maker)  # type: ignore[valid-type]  # noqa: E731

    counts = run_sweep(uow, banks.__getitem__, two_shops, lambda _id: True, now=NOW)

    with maker() as session:
        statuses = dict(session.execute(select(Order.shop_no, Order.status)).all())
        runs = {r.shop_no: r for r in session.scalars(select(SweepRun))}
        events = session.scalars(select(OrderEvent.shop_no).where(OrderEvent.to_status == "paid")).all()
    assert statuses == {ONE: "pending", TWO: "paid"}
    assert list(events) == [TWO]
    assert runs[ONE].errors >= 1
    assert runs[ONE].window_end is None
    assert (runs[TWO].errors, runs[TWO].settled) == (0, 1)
    assert runs[TWO].window_end == NOW
    assert (counts.settled, counts.window_end) == (1, None)  # one shop's window is still open
    assert banks[TWO].order_queries  # both shops were asked
    assert banks[ONE].order_queries


def test_each_shop_keeps_its_own_bulk_window(maker: sessionmaker[Session], two_shops: Settings,
                                             banks: dict[str, FakeBankClient]) -> None:
    from datetime import timedelta

    uow = lambda: _uow(maker)  # noqa: E731
    down = BankHTTPError("OrderQuery: 503", service="OrderQuery", status=503)
    banks[ONE].script_query(None, down, query_result())
    run_sweep(uow, banks.__getitem__, two_shops, lambda _id: True, now=NOW)
    later = NOW + timedelta(hours=1)
    run_sweep(uow, banks.__getitem__, two_shops, lambda _id: True, now=later)
    overlap = timedelta(seconds=two_shops.sweep_window_overlap)
    window_starts = {q.pay_from for q in banks[TWO].order_queries[1:] if q.pay_from}
    assert window_starts == {NOW - overlap}  # shop two read its first window: it continues from there
    first_lookback = [q.pay_from for q in banks[ONE].order_queries if q.pay_from]
    assert first_lookback[-1] == later - timedelta(days=1)  # shop one never completed one: a day back
