"""The pull feed on real PostgreSQL when transactions commit out of id order.

Sequences hand out ids at INSERT time, not at commit: transaction A takes event id n, B takes n + 1 and
commits first. A reader paging by id alone would see n + 1, move its cursor past n, and never see A's
event. These tests hold real transactions open on separate connections and commit them in the wrong
order, with a reader following `next` in between.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from core.db import make_engine
from core.models import Order, ShopEvent
from core.services.events import Cursor, feed_page, record_event
from core.services.order_json import order_detail
from core.services.orders import NewOrder, create_order
from core.services.settlement import transition
from core.settings import get_settings, load_settings
from tests.support.fakes import FakeBankClient
from tests.support.poll import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def maker(pg_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(pg_url, pool_size=20, max_overflow=0)
    yield sessionmaker(bind=engine, expire_on_commit=False)
    engine.dispose()


class Reader:
    """A shop following `next`, remembering every event id it was given."""

    def __init__(self, maker: sessionmaker[Session]) -> None:
        self.maker = maker
        self.cursor = Cursor()
        self.seen: list[int] = []

    def poll(self) -> list[int]:
        got: list[int] = []
        while True:
            with self.maker() as s:
                rows, self.cursor = feed_page(s, self.cursor, 2)
            if not rows:
                return got
            got += [r.id for r in rows]
            self.seen += [r.id for r in rows]

    def poll_until(self, count: int, timeout: float = 20) -> list[int]:
        """Poll until `count` more events came. The PostgreSQL server is shared: a write transaction of
        another database on it holds the horizon back too, for as long as it runs."""
        got: list[int] = []

        def enough() -> bool:
            got.extend(self.poll())
            return len(got) >= count

        wait_for(enough, timeout=timeout, interval=0.05, message=f"{count} events in the feed")
        return got


def _orders(maker: sessionmaker[Session], n: int) -> list[str]:
    bank, settings = FakeBankClient(), load_settings({})
    with maker() as s:
        nos = [create_order(s, bank, settings, NewOrder(100 + i, "A", "feed", f"FEED{i}")).order_no
               for i in range(n)]
        s.commit()
    return nos


def test_a_later_id_committed_first_is_held_back_until_the_earlier_one_commits(
    maker: sessionmaker[Session],
) -> None:
    a_no, b_no = _orders(maker, 2)
    reader = Reader(maker)
    assert len(reader.poll_until(2)) == 2

    # A takes the lower event id and stays open; B takes the next id and commits first
    a, b = maker(), maker()
    transition(a, a_no, "paid", source="backend")
    transition(b, b_no, "expired", source="sweep")
    a_id = a.scalar(select(ShopEvent.id).where(ShopEvent.order_no == a_no, ShopEvent.type == "order.paid"))
    b_id = b.scalar(select(ShopEvent.id).where(ShopEvent.order_no == b_no, ShopEvent.type == "order.expired"))
    assert a_id is not None
    assert b_id is not None
    assert a_id < b_id
    b.commit()

    # The committed later id is not served while the earlier transaction may still commit...
    assert reader.poll() == []
    # ...and once A commits, both come, each once
    a.commit()
    assert sorted(reader.poll_until(2)) == [a_id, b_id]
    a.close()
    b.close()
    assert reader.poll() == []
    assert sorted(reader.seen) == sorted(set(reader.seen))
    with maker() as s:
        assert sorted(reader.seen) == sorted(s.scalars(select(ShopEvent.id)))


def test_a_transaction_that_got_its_id_first_but_writes_its_event_last(maker: sessionmaker[Session]) -> None:
    (no,) = _orders(maker, 1)
    reader = Reader(maker)
    reader.poll_until(1)
    # B assigns itself a transaction id first (any write), A starts later and writes an event at once
    b, a = maker(), maker()
    b.execute(select(Order.id).with_for_update().where(Order.order_no == no))
    with maker() as s:
        order = s.scalars(select(Order).where(Order.order_no == no)).one()
    b_event = record_event(b, order, "pending", "pending", "operator", datetime.now(UTC)).id
    a_event = record_event(a, order, "pending", "pending", "operator", datetime.now(UTC)).id
    a.commit()
    got_while_b_open = reader.poll()
    b.commit()
    got_after = reader.poll_until(2 - len(got_while_b_open))
    a.close()
    b.close()
    # every event exactly once, whatever order the commits came in
    assert sorted(got_while_b_open + got_after) == sorted([a_event, b_event])
    assert len(reader.seen) == len(set(reader.seen))


def test_a_rolled_back_event_never_appears_and_never_blocks_the_feed(maker: sessionmaker[Session]) -> None:
    no_a, no_b = _orders(maker, 2)
    reader = Reader(maker)
    reader.poll_until(2)
    a, b = maker(), maker()
    transition(a, no_a, "paid", source="backend")
    transition(b, no_b, "paid", source="backend")
    b.commit()
    a.rollback()
    got = reader.poll_until(1)
    a.close()
    b.close()
    with maker() as s:
        types = {r.order_no: r.type for r in s.scalars(select(ShopEvent).where(ShopEvent.id.in_(got)))}
    assert types == {no_b: "order.paid"}


def test_many_writers_committing_in_random_order_lose_nothing(maker: sessionmaker[Session]) -> None:
    nos = _orders(maker, 12)
    reader = Reader(maker)
    reader.poll_until(12)
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            reader.poll()

    thread = threading.Thread(target=read)
    thread.start()
    sessions = [maker() for _ in nos]
    for s, no in zip(sessions, nos, strict=True):
        transition(s, no, "paid", source="backend")
    random.shuffle(sessions)
    for s in sessions:
        s.commit()
        s.close()
    stop.set()
    thread.join()
    with maker() as s:
        every = sorted(s.scalars(select(ShopEvent.id)))
    reader.poll_until(len(every) - len(reader.seen))
    assert sorted(reader.seen) == every
    assert len(reader.seen) == len(set(reader.seen))


def test_a_transition_event_on_postgresql_carries_its_txid_and_the_exact_body(
    maker: sessionmaker[Session],
) -> None:
    (no,) = _orders(maker, 1)
    at = datetime.now(UTC)
    with maker() as s:
        txid = s.scalar(text("SELECT pg_current_xact_id()::text::bigint"))
        assert transition(s, no, "paid", source="backend", ts_no="TX1", amount=10000, now=at)
        s.commit()
    with maker() as s:
        order = s.scalars(select(Order).where(Order.order_no == no)).one()
        row = s.scalars(select(ShopEvent).where(ShopEvent.order_no == no,
                                                ShopEvent.type == "order.paid")).one()
    assert row.txid == txid  # the writing transaction's id, for the feed's commit order
    assert (row.state, row.attempts, row.next_attempt_at, row.created_at) == ("pending", 0, at, at)
    assert row.body == json.dumps({
        "id": f"evt_{row.id}", "type": "order.paid", "timestamp": at.isoformat(),
        "data": {"order": order_detail(order, get_settings()), "from_status": "pending", "to_status": "paid",
                 "source": "backend"},
    }, ensure_ascii=False, separators=(",", ":"))
