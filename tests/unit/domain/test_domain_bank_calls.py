"""bank_calls.recorder: the client's observer turns each call into a BankCall row."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import BankCall
from core.services.bank_calls import record_calls, recorder
from core.sinopac.types import BankCallRecord

from .conftest import NOW


def test_a_call_record_becomes_a_row(session: Session) -> None:
    record = recorder(session)

    record(BankCallRecord(api_service="OrderQuery", key="A001", started_at=NOW, duration_ms=842,
                          http_status=200, outcome="ok"))
    session.flush()

    row = session.scalars(select(BankCall)).one()
    assert (row.api_service, row.key, row.started_at, row.duration_ms, row.http_status, row.outcome) == (
        "OrderQuery", "A001", NOW, 842, 200, "ok"
    )
    assert row.error is None


def test_an_oversized_error_is_bounded(session: Session) -> None:
    recorder(session)(BankCallRecord(api_service="OrderPayQuery", key="8ab3058e…", started_at=NOW,
                                     duration_ms=30001, http_status=None, outcome="transport_error",
                                     error="x" * 5000))
    session.flush()

    row = session.scalars(select(BankCall)).one()
    assert len(row.error or "") == 500
    assert row.http_status is None


def test_many_records_in_one_call_each_become_their_row(session: Session) -> None:
    # Given more records than one INSERT statement carries (the statements hold up to eight rows)
    calls = [BankCallRecord(api_service="OrderQuery", key=f"A{i:03}", started_at=NOW, duration_ms=i,
                            http_status=200 if i % 2 else None, outcome="ok", shop_no=f"S{i}")
             for i in range(19)]

    # When they are recorded together
    record_calls(session, calls)
    session.flush()

    # Then each is its own row with its own values, none lost or repeated
    rows = session.execute(select(BankCall.key, BankCall.duration_ms, BankCall.http_status, BankCall.shop_no)
                           .order_by(BankCall.duration_ms)).all()
    assert [tuple(r) for r in rows] == [(f"A{i:03}", i, 200 if i % 2 else None, f"S{i}") for i in range(19)]
    record_calls(session, [])  # nothing to record: no statement, no error
