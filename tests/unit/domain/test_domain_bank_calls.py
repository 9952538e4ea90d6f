"""bank_calls.recorder: the client's observer turns each call into a BankCall row."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import BankCall
from core.services.bank_calls import recorder
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
