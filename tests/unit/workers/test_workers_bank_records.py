"""The resolve task's bank call records ride on its write transaction (workers/bank.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial

import pytest
from sqlalchemy import func, select

from core.db import transaction
from core.models import BankCall
from core.sinopac.types import BankCallRecord
from workers import bank


def _record(key: str) -> BankCallRecord:
    return BankCallRecord(api_service="OrderPayQuery", key=key, started_at=datetime.now(UTC), duration_ms=3,
                          http_status=200, outcome="ok")


def _keys(uow) -> list[str]:
    with uow() as s:
        return list(s.scalars(select(BankCall.key).order_by(BankCall.id)))


@pytest.fixture
def uow(db_url, monkeypatch):
    unit = partial(transaction, db_url)
    monkeypatch.setattr(bank, "transaction", unit)
    monkeypatch.setattr(bank.metrics, "bank_call", lambda _record: None)
    return unit


def test_records_made_between_transactions_are_written_by_the_next_one(uow):
    with bank.records_with_the_work() as unit:
        with unit() as session:  # the read: nothing recorded yet
            assert session.scalar(select(func.count()).select_from(BankCall)) == 0
        bank._observe(_record("A"))
        bank._observe(_record("B"))
        assert _keys(uow) == []  # not written alone
        with unit() as session:  # the write carries both, in its own commit
            session.flush()
            assert session.scalar(select(func.count()).select_from(BankCall)) == 2
    assert _keys(uow) == ["A", "B"]


def test_a_rolled_back_transaction_keeps_its_records_for_the_end(uow):
    with bank.records_with_the_work() as unit:
        bank._observe(_record("C"))
        with pytest.raises(RuntimeError), unit():
            raise RuntimeError("the write failed")
        assert _keys(uow) == []
    assert _keys(uow) == ["C"]  # written alone when the task's work ended


def test_outside_the_task_each_record_is_written_alone_at_once(uow):
    bank._observe(_record("D"))
    assert _keys(uow) == ["D"]
