"""After a PostgreSQL restart, a web process meets one dead pooled connection: the callback is
recorded on a fresh one instead of answering the bank 503 (which it would resend 10 minutes later)."""

from __future__ import annotations

from contextlib import contextmanager
from unittest import mock

import pytest
from sqlalchemy.exc import OperationalError

from core.services.callbacks import CallbackRecord
from core.states import Source
from webhook import callbacks
from webhook.validation import CallbackInput

CALLBACK = CallbackInput(shop_no="NA0001_001", pay_token="tok_1")
RECORD = CallbackRecord(token_id=7, created=True, needs_enqueue=True)


def dead(invalidated: bool) -> OperationalError:
    exc = OperationalError("INSERT", {}, Exception("server closed the connection unexpectedly"))
    exc.connection_invalidated = invalidated
    return exc


def unit_of_work_failing_with(*errors: Exception):
    errors_left = list(errors)
    opened = []

    @contextmanager
    def uow():
        opened.append(1)
        yield mock.sentinel.session
        if errors_left:
            raise errors_left.pop(0)

    return uow, opened


def test_a_dead_pooled_connection_is_retried_once_on_a_fresh_one(monkeypatch):
    # Given the first transaction fails because its pooled connection was dead (pool now recycled)
    monkeypatch.setattr(callbacks, "record_callback", lambda *a, **k: RECORD)
    uow, opened = unit_of_work_failing_with(dead(invalidated=True))
    # When the callback is recorded
    record = callbacks._record(uow, CALLBACK, Source.BACKEND)
    # Then a second transaction records it
    assert record == RECORD
    assert len(opened) == 2


def test_a_database_that_stays_down_still_fails_after_one_retry(monkeypatch):
    monkeypatch.setattr(callbacks, "record_callback", lambda *a, **k: RECORD)
    uow, opened = unit_of_work_failing_with(dead(invalidated=True), dead(invalidated=True))
    with pytest.raises(OperationalError):
        callbacks._record(uow, CALLBACK, Source.BACKEND)
    assert len(opened) == 2


def test_other_database_errors_are_not_retried(monkeypatch):
    monkeypatch.setattr(callbacks, "record_callback", lambda *a, **k: RECORD)
    uow, opened = unit_of_work_failing_with(dead(invalidated=False))
    with pytest.raises(OperationalError):
        callbacks._record(uow, CALLBACK, Source.BACKEND)
    assert len(opened) == 1
