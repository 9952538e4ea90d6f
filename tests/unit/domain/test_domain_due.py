"""Due work for the sweep: unresolved tokens past a grace period, pending orders due for a check."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from core.models import Order, PayToken
from core.services.callbacks import mark_enqueued, record_callback
from core.services.due import claim_due_orders, due_tokens, next_check_at
from core.services.resolution import reopen_untrusted, resolve_token
from core.services.settlement import transition
from core.settings import Settings
from core.sinopac.errors import SignatureMismatch
from tests.support.fakes import FakeBankClient

from .conftest import NOW

GRACE = timedelta(minutes=2)


def _token(session: Session, token: str, minutes_ago: float) -> int:
    at = NOW - timedelta(minutes=minutes_ago)
    return record_callback(session, shop_no="NA0001_001", pay_token=token, source="backend", now=at).token_id


def test_unresolved_tokens_past_the_grace_period_are_due_oldest_first(session: Session) -> None:
    fresh = _token(session, "a" * 64, minutes_ago=1)
    old = _token(session, "b" * 64, minutes_ago=30)
    older = _token(session, "c" * 64, minutes_ago=60)
    resolved = _token(session, "d" * 64, minutes_ago=90)
    session.execute(update(PayToken).where(PayToken.id == resolved).values(state="resolved"))

    due = due_tokens(session, now=NOW, grace=GRACE, limit=10)

    assert due == [older, old]
    assert fresh not in due


def test_an_untrusted_token_is_never_due_until_an_operator_reopens_it(
    session: Session, bank: FakeBankClient, settings: Settings
) -> None:
    # given a token whose bank reply failed verification, long ago
    token_id = _token(session, "a" * 64, minutes_ago=600)
    bank.script_pay("a" * 64, SignatureMismatch("OrderPayQuery: Sign does not verify"))
    resolve_token(session, bank, settings, token_id, now=NOW - timedelta(minutes=599))

    # when the sweep looks for due tokens, however late, then it is not among them
    assert due_tokens(session, now=NOW + timedelta(days=30), grace=GRACE, limit=10) == []

    # and once an operator reopens it, it is due again
    assert reopen_untrusted(session, token_id) is True
    assert due_tokens(session, now=NOW, grace=GRACE, limit=10) == [token_id]


def test_a_recently_enqueued_token_waits_for_its_grace_period(session: Session) -> None:
    token_id = _token(session, "a" * 64, minutes_ago=30)
    mark_enqueued(session, token_id, now=NOW - timedelta(seconds=30))

    assert due_tokens(session, now=NOW, grace=GRACE, limit=10) == []
    assert due_tokens(session, now=NOW + GRACE, grace=GRACE, limit=10) == [token_id]


def test_due_tokens_respects_the_limit_and_takes_seconds_as_grace(session: Session) -> None:
    ids = [_token(session, ch * 64, minutes_ago=10 + i) for i, ch in enumerate("abcde")]

    assert due_tokens(session, now=NOW, grace=120.0, limit=2) == [ids[4], ids[3]]


def test_pending_orders_due_for_a_check_are_claimed_and_leased(
    session: Session, new_order: Callable[..., Order]
) -> None:
    due = new_order(order_no="A001")  # next check at NOW + 60 s
    later = new_order(order_no="A002")
    later.next_check_at = NOW + timedelta(hours=1)
    paid = new_order(order_no="A003")
    transition(session, paid.order_no, "paid", source="backend", now=NOW)
    at = NOW + timedelta(minutes=2)

    claimed = claim_due_orders(session, now=at, limit=10)

    assert claimed == ["A001"]
    session.refresh(due)
    assert due.next_check_at == at + timedelta(minutes=5)
    assert claim_due_orders(session, now=at, limit=10) == []  # a second sweep finds nothing


def test_claim_respects_the_limit_oldest_due_first(session: Session, new_order: Callable[..., Order]) -> None:
    for i in range(4):
        order = new_order(order_no=f"A00{i}")
        order.next_check_at = NOW - timedelta(minutes=i)
    session.flush()

    claimed = claim_due_orders(session, now=NOW, limit=2, lease=60)

    assert claimed == ["A003", "A002"]


@pytest.mark.parametrize(("attempts", "seconds"), [(0, 60), (1, 300), (2, 900), (3, 900), (50, 900)])
def test_next_check_follows_the_schedule_then_repeats_its_last_step(attempts: int, seconds: int) -> None:
    assert next_check_at(attempts, NOW, (60, 300, 900)) == NOW + timedelta(seconds=seconds)


def test_an_empty_schedule_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        next_check_at(0, NOW, ())


def _history(session: Session, settled: int, waiting: int) -> None:
    """Many settled orders and resolved tokens, a few pending/received ones; then ANALYZE."""
    rows = [dict(shop_no="NA0001_001", order_no=f"H{i:06d}", amount=100, currency="TWD", pay_type="A",
                 product_name="x", status="paid" if i >= waiting else "pending", check_attempts=0,
                 next_check_at=NOW, created_at=NOW, updated_at=NOW) for i in range(settled + waiting)]
    session.execute(insert(Order), rows)
    tokens = [dict(shop_no="NA0001_001", pay_token=f"{i:064x}", source="backend", receipts=1,
                   first_received_at=NOW, last_received_at=NOW, attempts=1,
                   state="resolved" if i >= waiting else "received") for i in range(settled + waiting)]
    session.execute(insert(PayToken), tokens)
    session.connection().exec_driver_sql("ANALYZE")


@pytest.mark.parametrize(
    ("sql", "index"),
    [
        ("SELECT id FROM pay_tokens WHERE state = 'received' AND last_received_at <= '2026-11-25' "
         "ORDER BY last_received_at LIMIT 10", "ix_pay_tokens_unresolved"),
        ("SELECT id FROM orders WHERE status = 'pending' AND next_check_at <= '2026-11-25' "
         "ORDER BY next_check_at LIMIT 10", "ix_orders_due_check"),
    ],
)
def test_due_work_queries_use_the_partial_indexes(session: Session, sql: str, index: str) -> None:
    _history(session, settled=3000, waiting=5)

    plan = " ".join(str(row[-1]) for row in session.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + sql))

    assert index in plan
