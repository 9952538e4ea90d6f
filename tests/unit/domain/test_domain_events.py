"""Order events (the notification outbox): one per change, in the change's transaction, body fixed."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.models import Order, ShopEvent
from core.services import events
from core.services.events import Cursor, feed_page, parse_event_name, record_event
from core.services.order_json import order_detail
from core.services.settlement import transition
from core.settings import get_settings
from core.states import IllegalTransition
from tests.unit.domain.conftest import NOW


def bodies(session: Session, order_no: str) -> list[dict[str, object]]:
    rows = session.scalars(select(ShopEvent).where(ShopEvent.order_no == order_no).order_by(ShopEvent.id))
    return [json.loads(r.body) for r in rows]


def test_creation_writes_order_pending_with_the_order_as_the_api_shows_it(
    session: Session, new_order: Callable[..., Order]
) -> None:
    new_order(order_no="E1")
    [body] = bodies(session, "E1")
    assert body["type"] == "order.pending"
    assert str(body["id"]).startswith("evt_")
    assert body["timestamp"] == NOW.isoformat()
    data = body["data"]
    assert isinstance(data, dict)
    assert (data["from_status"], data["to_status"], data["source"]) == (None, "pending", "api")
    order = data["order"]
    assert order["order_no"] == "E1"
    assert order["status"] == "pending"
    assert order["amount"] == 500
    assert order["atm_pay_no"]
    assert "events" not in order


def test_each_transition_writes_one_event_with_the_order_after_the_change(
    session: Session, new_order: Callable[..., Order]
) -> None:
    new_order(order_no="E2")
    later = NOW + timedelta(minutes=3)
    assert transition(session, "E2", "paid", source="backend", ts_no="T1", amount=50000, now=later)
    assert not transition(session, "E2", "paid", source="sweep", now=later)  # a no-op writes nothing
    pending, paid = bodies(session, "E2")
    assert paid["type"] == "order.paid"
    data = paid["data"]
    assert isinstance(data, dict)
    assert (data["from_status"], data["to_status"], data["source"]) == ("pending", "paid", "backend")
    assert data["order"]["status"] == "paid"
    assert data["order"]["paid_at"] == later.isoformat()
    assert int(str(paid["id"])[4:]) > int(str(pending["id"])[4:])


def test_an_operator_decision_on_needs_review_emits_paid(
    session: Session, new_order: Callable[..., Order]
) -> None:
    new_order(order_no="E3")
    transition(session, "E3", "needs_review", source="backend", detail="amount differs", now=NOW)
    transition(session, "E3", "paid", source="operator", now=NOW)
    assert [b["type"] for b in bodies(session, "E3")] == ["order.pending", "order.needs_review", "order.paid"]


def test_an_illegal_or_rolled_back_change_leaves_no_event(
    maker: sessionmaker[Session], new_order: Callable[..., Order], session: Session
) -> None:
    new_order(order_no="E4")
    session.commit()
    with maker() as other:
        transition(other, "E4", "expired", source="sweep", now=NOW)
        other.rollback()
    transition(session, "E4", "expired", source="sweep", now=NOW)
    with pytest.raises(IllegalTransition):
        transition(session, "E4", "paid", source="backend", now=NOW)
    assert [b["type"] for b in bodies(session, "E4")] == ["order.pending", "order.expired"]


def test_the_body_is_fixed_when_written(session: Session, new_order: Callable[..., Order]) -> None:
    order = new_order(order_no="E5")
    first = session.scalar(select(ShopEvent.body).where(ShopEvent.order_no == "E5"))
    order.product_name = "renamed later"
    session.flush()
    assert session.scalar(select(ShopEvent.body).where(ShopEvent.order_no == "E5")) == first


def test_new_events_are_published_after_commit_only(
    maker: sessionmaker[Session], new_order: Callable[..., Order], session: Session
) -> None:
    new_order(order_no="E6")
    session.commit()
    published: list[int] = []
    events.set_publisher(published.append)
    try:
        with maker() as s:
            transition(s, "E6", "paid", source="backend", now=NOW)
            assert published == []
            s.rollback()
        assert published == []
        with maker() as s:
            transition(s, "E6", "failed", source="backend", now=NOW)
            s.commit()
    finally:
        events.set_publisher(None)
    assert len(published) == 1
    assert session.scalar(select(ShopEvent.type).where(ShopEvent.id == published[0])) == "order.failed"


def test_a_failing_publisher_never_fails_the_change(
    maker: sessionmaker[Session], new_order: Callable[..., Order], session: Session
) -> None:
    new_order(order_no="E7")
    session.commit()

    def broken(_: int) -> None:
        raise ConnectionError("broker down")

    events.set_publisher(broken)
    try:
        with maker() as s:
            transition(s, "E7", "paid", source="backend", now=NOW)
            s.commit()
    finally:
        events.set_publisher(None)
    assert session.scalar(select(Order.status).where(Order.order_no == "E7")) == "paid"


def test_the_feed_pages_through_every_event_once_in_order(
    session: Session, new_order: Callable[..., Order]
) -> None:
    for i in range(5):
        new_order(order_no=f"F{i}")
        transition(session, f"F{i}", "paid", source="backend", now=NOW)
    session.commit()
    seen: list[int] = []
    cursor = Cursor()
    while True:
        rows, cursor = feed_page(session, cursor, 3)
        if not rows:
            break
        seen += [r.id for r in rows]
    total = session.scalar(select(func.count()).select_from(ShopEvent))
    assert len(seen) == total == 10
    assert seen == sorted(seen)
    rows, again = feed_page(session, cursor, 3)
    assert (rows, again) == ([], cursor)


@pytest.mark.parametrize("bad", ["x", "1", "1.", ".1", "-1.2", "1.2.3", "1.2 "])
def test_a_cursor_the_feed_never_gave_out_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="cursor"):
        Cursor.parse(bad)


def test_cursors_round_trip_and_event_names_parse() -> None:
    assert Cursor.parse(str(Cursor(12, 34))) == Cursor(12, 34)
    assert Cursor.parse("") == Cursor()
    assert parse_event_name("evt_42") == parse_event_name("42") == 42
    assert parse_event_name("evt_0") is None
    assert parse_event_name("evt_x") is None


def test_the_body_names_the_event_by_its_row_id(session: Session, new_order: Callable[..., Order]) -> None:
    order = new_order(order_no="E8")
    row = record_event(session, order, "pending", "expired", "operator", NOW)
    assert json.loads(row.body)["id"] == f"evt_{row.id}"


def _reference_body(event_id: int, order: Order, from_status: str | None, to_status: str, source: str,
                    at: datetime) -> str:
    """The body as the outbox first wrote it (json.dumps of the whole event, the order reloaded): the
    Core INSERT must store these same bytes."""
    return json.dumps({
        "id": f"evt_{event_id}",
        "type": f"order.{to_status}",
        "timestamp": at.isoformat(),
        "data": {"order": order_detail(order, get_settings()), "from_status": from_status,
                 "to_status": to_status, "source": source},
    }, ensure_ascii=False, separators=(",", ":"))


def test_the_stored_body_is_byte_for_byte_the_compact_json_of_the_event(
    session: Session, new_order: Callable[..., Order], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHECKOUT_SECRET", "s" * 32)
    get_settings.cache_clear()
    try:
        created = new_order(order_no="E9")
        later = NOW + timedelta(minutes=3)
        transition(session, created.order_no, "needs_review", source="backend", detail='amount "差異" \\ /\n',
                   ts_no="T9", amount=50000, now=later)
        order = session.scalars(select(Order).where(Order.order_no == created.order_no)
                                .execution_options(populate_existing=True)).one()
        rows = session.execute(select(ShopEvent.id, ShopEvent.body)
                               .where(ShopEvent.order_no == order.order_no).order_by(ShopEvent.id)).all()
        assert json.loads(rows[0].body)["data"]["order"]["checkout_url"]
        assert rows[1].body == _reference_body(rows[1].id, order, "pending", "needs_review", "backend", later)
        assert '\\"差異\\"' in rows[1].body  # quotes escaped
        assert "測試商品" in rows[1].body  # non-ASCII kept
    finally:
        get_settings.cache_clear()
