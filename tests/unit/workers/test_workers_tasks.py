"""The sweep task's own edges: a database outage is a logged skip, not a crash with a traceback."""

from __future__ import annotations

import logging
from functools import partial

import pytest
from sqlalchemy.exc import OperationalError

from core.db import statement
from workers import bank as worker_bank
from workers import tasks


def test_a_sweep_with_the_database_down_is_skipped_with_a_warning(monkeypatch, caplog):
    # Given a database that refuses connections
    def down(*_args, **_kwargs):
        raise OperationalError("connect", {}, ConnectionRefusedError("refused"))

    monkeypatch.setattr(tasks, "run_sweep", down)

    # When beat's sweep runs
    with caplog.at_level(logging.WARNING, logger="workers.tasks"):
        result = tasks.sweep.run()

    # Then it reports one error and logs one warning without a traceback
    assert result == {"errors": 1}
    [record] = [r for r in caplog.records if r.name == "workers.tasks"]
    assert record.levelno == logging.WARNING
    assert record.exc_info is None
    assert "database unavailable" in record.getMessage()


def test_a_sweep_is_acknowledged_on_receipt():
    # (beat sends another; an unacknowledged sweep would be cancelled when the broker connection drops)
    assert tasks.sweep.acks_late is False
    assert tasks.resolve_pay_token.acks_late is True


@pytest.mark.parametrize("error", [ValueError("bug")])
def test_other_sweep_errors_still_raise(monkeypatch, error):
    monkeypatch.setattr(tasks, "run_sweep", lambda *a, **k: (_ for _ in ()).throw(error))
    with pytest.raises(type(error)):
        tasks.sweep.run()


def test_a_bank_call_that_cannot_be_recorded_during_an_outage_logs_a_warning(monkeypatch, caplog):
    # Given a database that goes down while the sweep talks to the bank
    from core.sinopac.types import BankCallRecord
    from workers import bank

    def down(*_args, **_kwargs):
        raise OperationalError("connect", {}, ConnectionRefusedError("refused"))

    monkeypatch.setattr(bank, "transaction", down)
    record = BankCallRecord(api_service="OrderQuery", key="Q1", started_at=None, duration_ms=1,
                            http_status=200, outcome="ok")

    # When the call's record is written
    with caplog.at_level(logging.WARNING, logger="workers.bank"):
        bank._record_alone(record)

    # Then the work goes on and the log says why, without a traceback
    [logged] = [r for r in caplog.records if r.name == "workers.bank"]
    assert logged.levelno == logging.WARNING
    assert logged.exc_info is None


def test_an_untrusted_bank_reply_raises_one_alert_naming_the_task_and_parks_the_token(
    monkeypatch, caplog, uow, settings
):
    # Given a stored token whose OrderPayQuery reply carries a Sign that does not verify
    from core.models import PayToken
    from core.sinopac.errors import SignatureMismatch
    from tests.support.fakes import FakeBankClient
    from tests.unit.workers.conftest import NOW, add_token

    token = "9f" * 32
    token_id = add_token(uow, token, received=NOW)
    bank = FakeBankClient().script_pay(token, SignatureMismatch("OrderPayQuery: Sign does not verify"))
    monkeypatch.setattr(tasks, "transaction", uow)
    monkeypatch.setattr(worker_bank, "transaction", uow)  # the resolution's own transactions
    monkeypatch.setattr(tasks, "statement", partial(statement, settings.database_url))  # its token read
    monkeypatch.setattr(tasks, "client_for", lambda shop_no: bank)
    monkeypatch.setattr(tasks, "get_settings", lambda: settings)

    # When the resolve task runs
    with caplog.at_level(logging.DEBUG):
        result = tasks.resolve_pay_token.run(token_id)

    # Then it is not retried, the token is parked as untrusted, and exactly one ALERT says so
    assert result == "protocol_error"
    with uow() as s:
        assert s.get_one(PayToken, token_id).state == "untrusted"
    alerts = [r for r in caplog.records if "ALERT" in r.getMessage()]
    assert [r.name for r in alerts] == ["workers.tasks"]
    [alert] = alerts
    assert alert.levelno == logging.ERROR
    assert (alert.token_id, alert.outcome, alert.pay_token) == (token_id, "protocol_error", token[:8] + "…")
    assert "tokens replay" in alert.getMessage()
    assert token not in alert.getMessage()


def test_the_resolve_tasks_log_lines_carry_the_tokens_shop(monkeypatch, caplog, uow, settings):
    # Given a stored token of the shop, and log records that carry the logging context
    from core.logging import bind_context, install_record_factory, reset_context
    from tests.support.fakes import FakeBankClient
    from tests.unit.workers.conftest import NOW, add_token

    install_record_factory()
    token_id = add_token(uow, "7e" * 32, received=NOW)
    asked: list[str] = []

    def client_for(shop_no: str) -> FakeBankClient:
        asked.append(shop_no)
        return FakeBankClient()

    monkeypatch.setattr(tasks, "transaction", uow)
    monkeypatch.setattr(worker_bank, "transaction", uow)  # the resolution's own transactions
    monkeypatch.setattr(tasks, "statement", partial(statement, settings.database_url))  # its token read
    monkeypatch.setattr(tasks, "client_for", client_for)
    monkeypatch.setattr(tasks, "get_settings", lambda: settings)
    outer = bind_context()  # stands for the task's own context, reset after it (task_postrun)
    try:
        # When the task runs (the fake bank rejects the token)
        with caplog.at_level(logging.INFO):
            assert tasks.resolve_pay_token.run(token_id) == "rejected"
    finally:
        reset_context(outer)
    # Then it asked with the token's shop's client, and its outcome line names that shop
    assert asked == [settings.shop_no]
    [line] = [r for r in caplog.records if r.name == "workers.tasks"]
    assert line._qpay_context["shop_no"] == settings.shop_no


def test_an_unexpected_exception_counts_as_an_attempt_and_the_last_one_kills_the_token_with_one_alert(
    monkeypatch, caplog, uow, settings
):
    # Given a token whose resolution crashes every time (a bug, not the bank), and a bound of 2
    from dataclasses import replace

    from celery.exceptions import Retry

    from core.models import PayToken
    from tests.unit.workers.conftest import NOW, add_token

    token_id = add_token(uow, "7e" * 32, received=NOW)

    def crash(*_args, **_kwargs):
        raise KeyError("surprise")

    monkeypatch.setattr(tasks, "resolve_token", crash)
    monkeypatch.setattr(tasks, "transaction", uow)
    monkeypatch.setattr(worker_bank, "transaction", uow)  # the resolution's own transactions
    monkeypatch.setattr(tasks, "statement", partial(statement, settings.database_url))  # its token read
    monkeypatch.setattr(tasks, "get_settings", lambda: replace(settings, max_attempts=2))
    monkeypatch.setattr(tasks.resolve_pay_token, "retry", lambda **kw: Retry())

    # When the task runs twice
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(Retry):
            tasks.resolve_pay_token.run(token_id)
        result = tasks.resolve_pay_token.run(token_id)

    # Then the first crash is retried like an outage, the second is the last: dead, one ALERT
    assert result == "dead"
    with uow() as s:
        tok = s.get_one(PayToken, token_id)
        assert (tok.state, tok.attempts) == ("dead", 2)
    alerts = [r for r in caplog.records if "ALERT" in r.getMessage()]
    assert len(alerts) == 1
    assert "dead after 2 failed resolutions" in alerts[0].getMessage()


def test_every_resolution_outcome_has_its_log_line():
    # (the task reports an outcome through its table: a kind missing there would crash the task)
    from core.services.outcomes import ResolveKind

    assert set(tasks._REPORTS) == set(ResolveKind)
