"""resolve_token: ask the bank, settle, mark the token; idempotent and never retried blindly."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import BankCall, Order, PayToken
from core.services.bank_calls import recorder
from core.services.callbacks import record_callback
from core.services.due import due_tokens
from core.services.orders import order_history
from core.services.resolution import record_failed_attempt, reopen_untrusted, resolve_token
from core.settings import Settings
from core.sinopac.errors import (
    BankHTTPError,
    BankTimeout,
    MalformedReply,
    NotAnEnvelope,
    SignatureMismatch,
    UndecryptableReply,
)
from tests.support.fakes import FakeBankClient, pay_result, query_result, query_row, rejection

from .conftest import NOW

TOKEN = "8ab3058e" + "1" * 54 + "c9"


def _token(session: Session) -> int:
    return record_callback(session, shop_no="NA0001_001", pay_token=TOKEN, source="backend", now=NOW).token_id


def _paid(order: Order, **kw: object) -> object:
    fields: dict[str, object] = dict(order_no=order.order_no, amount=order.amount, ts_no=order.ts_no or "",
                                     pay_token=TOKEN)
    return pay_result(**{**fields, **kw})  # type: ignore[arg-type]


def test_a_paid_token_settles_its_order_and_is_resolved(
    session: Session, bank: FakeBankClient, settings: Settings, new_order: Callable[..., Order]
) -> None:
    order = new_order()
    token_id = _token(session)
    bank.script_pay(TOKEN, _paid(order))

    out = resolve_token(session, bank, settings, token_id, now=NOW)

    assert (out.kind, out.order_no) == ("settled", order.order_no)
    assert order.status == "paid"
    tok = session.get_one(PayToken, token_id)
    session.refresh(tok)
    assert (tok.state, tok.order_no, tok.attempts, tok.resolved_at) == ("resolved", order.order_no, 1, NOW)
    assert order_history(session, order.order_no)[-1].source == "backend"


def test_resolving_again_is_a_noop_without_a_bank_call(
    session: Session, bank: FakeBankClient, settings: Settings, new_order: Callable[..., Order]
) -> None:
    order = new_order()
    token_id = _token(session)
    bank.script_pay(TOKEN, _paid(order))
    resolve_token(session, bank, settings, token_id, now=NOW)

    again = resolve_token(session, bank, settings, token_id, now=NOW)

    assert again.kind == "noop"
    assert bank.pay_queries == [TOKEN]
    assert len(order_history(session, order.order_no)) == 2


def test_a_second_token_for_the_same_payment_changes_nothing(
    session: Session, bank: FakeBankClient, settings: Settings, new_order: Callable[..., Order]
) -> None:
    order = new_order()
    first = _token(session)
    other = "e" * 64
    second = record_callback(session, shop_no="NA0001_001", pay_token=other, source="return").token_id
    bank.script_pay(TOKEN, _paid(order)).script_pay(other, pay_result(
        order_no=order.order_no, amount=order.amount, ts_no=order.ts_no or "", pay_token=other))

    kinds = [resolve_token(session, bank, settings, t, now=NOW).kind for t in (first, second)]

    assert kinds == ["settled", "noop"]
    assert len(order_history(session, order.order_no)) == 2


@pytest.mark.parametrize("error", [BankTimeout("read timeout"), BankHTTPError("HTTP 503", status=503)])
def test_a_transient_bank_error_is_recorded_for_a_retry(
    session: Session, bank: FakeBankClient, settings: Settings, new_order: Callable[..., Order],
    error: Exception,
) -> None:
    order = new_order()
    token_id = _token(session)
    bank.script_pay(TOKEN, error)

    out = resolve_token(session, bank, settings, token_id, now=NOW)

    assert out.kind == "transient"
    tok = session.get_one(PayToken, token_id)
    session.refresh(tok)
    assert (tok.state, tok.attempts) == ("received", 1)
    assert str(error) in (tok.last_error or "")
    assert order.status == "pending"


def test_a_bank_rejection_rejects_the_token_with_its_code(
    session: Session, bank: FakeBankClient, settings: Settings
) -> None:
    token_id = _token(session)
    bank.script_pay(TOKEN, rejection("E0001", "查無資料"))

    out = resolve_token(session, bank, settings, token_id, now=NOW)

    assert out.kind == "rejected"
    tok = session.get_one(PayToken, token_id)
    session.refresh(tok)
    assert tok.state == "rejected"
    assert "E0001" in (tok.last_error or "")


@pytest.mark.parametrize(
    "error",
    [SignatureMismatch("OrderPayQuery: Sign does not verify"),
     UndecryptableReply("OrderPayQuery: reply does not decrypt"),
     MalformedReply("OrderPayQuery: reply lacks Message")],
)
def test_an_untrusted_reply_parks_the_token_as_untrusted_without_logging(
    session: Session, bank: FakeBankClient, settings: Settings, new_order: Callable[..., Order],
    caplog: pytest.LogCaptureFixture, error: Exception,
) -> None:
    # given a paid order whose token the bank answers with a reply that cannot be trusted
    order = new_order()
    token_id = _token(session)
    bank.script_pay(TOKEN, error)

    # when it is resolved
    with caplog.at_level(logging.DEBUG, logger="core"):
        out = resolve_token(session, bank, settings, token_id, now=NOW)

    # then the token is untrusted with the reason, the order untouched, and the alert left to the
    # caller (the task logs it once, with its task id)
    assert (out.kind, out.token_label) == ("protocol_error", TOKEN[:8] + "…")
    tok = session.get_one(PayToken, token_id)
    session.refresh(tok)
    assert (tok.state, tok.attempts, tok.resolved_at) == ("untrusted", 1, None)
    assert type(error).__name__ in (tok.last_error or "")
    assert order.status == "pending"
    assert not [r for r in caplog.records if "ALERT" in r.getMessage()]


def test_an_untrusted_token_is_not_resolved_again_until_reopened(
    session: Session, bank: FakeBankClient, settings: Settings, new_order: Callable[..., Order]
) -> None:
    # given a token parked as untrusted, and a bank that now answers correctly
    order = new_order()
    token_id = _token(session)
    bank.script_pay(TOKEN, SignatureMismatch("OrderPayQuery: Sign does not verify"), _paid(order))
    resolve_token(session, bank, settings, token_id, now=NOW)

    # when a redelivered task resolves it again, then nothing is asked and nothing moves
    assert resolve_token(session, bank, settings, token_id, now=NOW).kind == "noop"
    assert (bank.pay_queries, order.status) == ([TOKEN], "pending")

    # when an operator reopens it and it is resolved, then the payment settles once
    assert reopen_untrusted(session, token_id) is True
    assert reopen_untrusted(session, token_id) is False  # a second replay at once reopens nothing
    out = resolve_token(session, bank, settings, token_id, now=NOW)
    assert (out.kind, order.status) == ("settled", "paid")
    tok = session.get_one(PayToken, token_id)
    session.refresh(tok)
    assert (tok.state, tok.attempts, tok.last_error) == ("resolved", 1, None)  # the replay reset attempts


def test_only_an_untrusted_token_can_be_reopened(
    session: Session, bank: FakeBankClient, settings: Settings, new_order: Callable[..., Order]
) -> None:
    order = new_order()
    token_id = _token(session)
    bank.script_pay(TOKEN, _paid(order))
    resolve_token(session, bank, settings, token_id, now=NOW)

    assert reopen_untrusted(session, token_id) is False
    assert session.get_one(PayToken, token_id).state == "resolved"


def test_a_token_for_an_unknown_order_is_rejected_with_the_reason(
    session: Session, bank: FakeBankClient, settings: Settings
) -> None:
    token_id = _token(session)
    bank.script_pay(TOKEN, pay_result(order_no="NOTOURS", amount=100, ts_no="NA0001000009", pay_token=TOKEN))

    out = resolve_token(session, bank, settings, token_id, now=NOW)

    assert out.kind == "rejected"
    tok = session.get_one(PayToken, token_id)
    session.refresh(tok)
    assert tok.state == "rejected"
    assert "NOTOURS" in (tok.last_error or "")


def test_a_mismatching_payment_is_resolved_into_review(
    session: Session, bank: FakeBankClient, settings: Settings, new_order: Callable[..., Order]
) -> None:
    order = new_order()
    token_id = _token(session)
    bank.script_pay(TOKEN, _paid(order, amount=1))

    out = resolve_token(session, bank, settings, token_id, now=NOW)

    assert (out.kind, order.status) == ("review", "needs_review")
    assert "amount 1 differs" in (out.error or "")


def test_every_bank_call_is_recorded_with_service_duration_and_outcome(
    session: Session, settings: Settings, new_order: Callable[..., Order]
) -> None:
    order = new_order()
    token_id = _token(session)
    bank = FakeBankClient(observer=recorder(session))
    bank.script_pay(TOKEN, BankTimeout("read timeout"), _paid(order))

    resolve_token(session, bank, settings, token_id, now=NOW)
    resolve_token(session, bank, settings, token_id, now=NOW)
    session.flush()

    calls = session.scalars(select(BankCall).order_by(BankCall.id)).all()
    assert [(c.api_service, c.outcome, c.duration_ms) for c in calls] == [
        ("OrderPayQuery", "transport_error", 3), ("OrderPayQuery", "ok", 3), ("OrderQuery", "ok", 3)
    ]
    assert calls[0].key == TOKEN[:8] + "…"
    assert calls[0].error == "read timeout"


def test_an_unknown_token_id_is_a_noop(session: Session, bank: FakeBankClient, settings: Settings) -> None:
    out = resolve_token(session, bank, settings, 4242, now=NOW)

    assert (out.kind, out.error) == ("noop", "no such token")
    assert bank.pay_queries == []


def test_a_maintenance_page_is_transient_never_untrusted(
    session: Session, bank: FakeBankClient, settings: Settings, new_order: Callable[..., Order]
) -> None:
    order = new_order()
    token_id = _token(session)
    bank.script_pay(TOKEN, NotAnEnvelope("OrderPayQuery: Order reply is not JSON: '<!DOCTYPE html>...'"))

    out = resolve_token(session, bank, settings, token_id, now=NOW)

    assert out.kind == "transient"
    tok = session.get_one(PayToken, token_id)
    session.refresh(tok)
    assert (tok.state, order.status) == ("received", "pending")


def test_a_signed_reply_naming_another_order_paid_is_confirmed_before_paying(
    session: Session, bank: FakeBankClient, settings: Settings, new_order: Callable[..., Order]
) -> None:
    # given two open orders, and an OrderPayQuery reply for A's token that says B was paid
    new_order(order_no="A001")
    other = new_order(order_no="B002")
    token_id = _token(session)
    bank.script_pay(TOKEN, _paid(other))
    # while the bank's own OrderQuery still reports B unpaid
    bank.script_query("B002", query_result(query_row(order_no="B002", amount=other.amount,
                                                     ts_no=other.ts_no or "", pay_status="1A200")))

    out = resolve_token(session, bank, settings, token_id, now=NOW)

    # then B is not paid: it waits for an operator, with the disagreement as the reason
    assert (out.kind, other.status) == ("review", "needs_review")
    assert "not confirmed" in (other.status_reason or "")
    assert bank.order_queries[-1].order_no == "B002"


def test_an_unavailable_confirmation_is_transient_and_pays_nothing(
    session: Session, bank: FakeBankClient, settings: Settings, new_order: Callable[..., Order]
) -> None:
    order = new_order()
    token_id = _token(session)
    bank.script_pay(TOKEN, _paid(order))
    bank.script_query(order.order_no, BankTimeout("OrderQuery: read timeout"))

    out = resolve_token(session, bank, settings, token_id, now=NOW)

    assert (out.kind, order.status) == ("transient", "pending")
    assert session.get_one(PayToken, token_id).state == "received"


def test_confirmation_can_be_switched_off(
    session: Session, bank: FakeBankClient, settings: Settings, new_order: Callable[..., Order]
) -> None:
    order = new_order()
    token_id = _token(session)
    bank.script_pay(TOKEN, _paid(order))

    out = resolve_token(session, bank, replace(settings, confirm_payments=False), token_id, now=NOW)

    assert (out.kind, order.status, bank.order_queries) == ("settled", "paid", [])


def test_a_token_failing_max_attempts_times_is_dead_with_one_alert_and_replay_revives_it(
    session: Session, bank: FakeBankClient, settings: Settings, new_order: Callable[..., Order]
) -> None:
    # given a bank that keeps failing, and a bound of 3 attempts
    order = new_order()
    token_id = _token(session)
    bank.script_pay(TOKEN, BankHTTPError("OrderPayQuery: HTTP 503", status=503))
    limited = replace(settings, max_attempts=3)

    kinds = [resolve_token(session, bank, limited, token_id, now=NOW).kind for _ in range(5)]

    # then the third failure kills it, once, and nothing asks the bank about it again
    assert kinds == ["transient", "transient", "dead", "noop", "noop"]
    assert len(bank.pay_queries) == 3
    assert session.scalar(select(PayToken.state).where(PayToken.id == token_id)) == "dead"
    assert due_tokens(session, now=NOW + timedelta(days=1), grace=0, limit=10) == []

    # and an operator's replay brings it back with its attempts reset
    assert reopen_untrusted(session, token_id) is True
    bank._pay[TOKEN] = [_paid(order)]
    assert resolve_token(session, bank, limited, token_id, now=NOW).kind == "settled"


def test_unexpected_failures_count_too(session: Session, settings: Settings) -> None:
    token_id = _token(session)
    limited = replace(settings, max_attempts=2)

    died = [record_failed_attempt(session, limited, token_id, "KeyError: 'x'") for _ in range(3)]

    assert died == [False, True, False]
    assert session.scalar(select(PayToken.state).where(PayToken.id == token_id)) == "dead"
