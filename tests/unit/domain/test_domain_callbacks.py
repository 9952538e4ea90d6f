"""The callback log: one row per PayToken, receipts counted, first/last seen and first source kept."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from core.models import PayToken
from core.services.callbacks import CallbackError, CallbackRecord, mark_enqueued, record_callback

from .conftest import NOW

TOKEN = "8ab3058e" + "0" * 54 + "c9"


def test_a_new_token_is_stored_once_and_needs_enqueueing(session: Session) -> None:
    rec = record_callback(session, shop_no="NA0001_001", pay_token=TOKEN, source="backend", now=NOW)

    assert (rec.created, rec.needs_enqueue, rec.receipts) == (True, True, 1)
    row = session.get_one(PayToken, rec.token_id)
    assert (row.pay_token, row.shop_no, row.source, row.state) == (TOKEN, "NA0001_001", "backend", "received")
    assert row.first_received_at == row.last_received_at == NOW


def test_a_repeated_token_counts_receipts_and_keeps_first_seen_and_source(session: Session) -> None:
    first = record_callback(session, shop_no="NA0001_001", pay_token=TOKEN, source="backend", now=NOW)
    later = NOW + timedelta(minutes=10)

    again = record_callback(session, shop_no="NA0001_001", pay_token=TOKEN, source="return", now=later)

    assert again.token_id == first.token_id
    assert (again.created, again.receipts, again.needs_enqueue) == (False, 2, True)
    session.expire_all()
    row = session.get_one(PayToken, first.token_id)
    assert (row.receipts, row.source) == (2, "backend")
    assert (row.first_received_at, row.last_received_at) == (NOW, later)


def test_a_resolved_token_needs_no_enqueueing(session: Session) -> None:
    rec = record_callback(session, shop_no="NA0001_001", pay_token=TOKEN, source="backend", now=NOW)
    session.execute(update(PayToken).where(PayToken.id == rec.token_id).values(state="resolved"))

    again = record_callback(session, shop_no="NA0001_001", pay_token=TOKEN, source="backend", now=NOW)

    assert (again.created, again.needs_enqueue, again.state) == (False, False, "resolved")


@pytest.mark.parametrize(
    ("shop_no", "pay_token"),
    [("NA0001_001", ""), ("NA0001_001", "a" * 129), ("NA0001_001", "abc'; drop"), ("", TOKEN),
     ("NA0001_001<script>", TOKEN)],
)
def test_unrecordable_fields_get_a_clear_error(session: Session, shop_no: str, pay_token: str) -> None:
    with pytest.raises(CallbackError):
        record_callback(session, shop_no=shop_no, pay_token=pay_token, source="backend", now=NOW)


def test_an_unknown_source_is_refused(session: Session) -> None:
    with pytest.raises(CallbackError, match="source must be one of"):
        record_callback(session, shop_no="NA0001_001", pay_token=TOKEN, source="email", now=NOW)


def test_mark_enqueued_stamps_the_token(session: Session) -> None:
    rec = record_callback(session, shop_no="NA0001_001", pay_token=TOKEN, source="backend", now=NOW)

    mark_enqueued(session, rec.token_id, now=NOW + timedelta(seconds=1))

    assert session.scalar(select(PayToken.last_enqueued_at)) == NOW + timedelta(seconds=1)


def test_twenty_concurrent_deliveries_of_one_token_make_one_row_on_sqlite(
    maker: sessionmaker[Session],
) -> None:
    start = threading.Barrier(20)

    def deliver(_: int) -> CallbackRecord:
        start.wait(timeout=30)
        with maker.begin() as s:
            return record_callback(s, shop_no="NA0001_001", pay_token=TOKEN, source="backend", now=NOW)

    with ThreadPoolExecutor(20) as pool:
        records = list(pool.map(deliver, range(20)))

    with maker() as s:
        rows = s.scalars(select(PayToken)).all()
    assert len(rows) == 1
    assert rows[0].receipts == 20
    assert sum(r.created for r in records) == 1
    assert {r.token_id for r in records} == {rows[0].id}


@pytest.mark.parametrize("dialect_name", ["postgresql", "sqlite"])
def test_the_upsert_binds_only_what_changes_per_call(dialect_name: str) -> None:
    # the constants (1, 'received', 0) are in the SQL; only the callback's own values are parameters
    from sqlalchemy.dialects import postgresql, sqlite

    from core.services.callbacks import _upsert

    dialect = postgresql.psycopg2.dialect() if dialect_name == "postgresql" else sqlite.dialect()
    compiled = _upsert(dialect_name).compile(dialect=dialect)
    assert set(compiled.params) == {"shop_no", "pay_token", "source", "at", "cutoff"}
    assert "'received'" in compiled.string
