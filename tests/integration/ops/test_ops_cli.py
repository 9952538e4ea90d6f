"""The on-call CLI (`flask --app webhook ...`) through click's runner: real app, SQLite, fake bank/broker.

Exit codes: 0 done, 1 unknown order/token or failed work, 2 usage error.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from flask.testing import FlaskCliRunner
from sqlalchemy import select, update

from core.db import transaction
from core.models import BankCall, Order, OrderEvent, PayToken
from core.settings import Settings
from core.sinopac.errors import BankTimeout, SignatureMismatch
from tests.integration.ops.conftest import FakeEnqueuer
from tests.support.fakes import FakeBankClient, pay_result, query_result, query_row

TOKEN = "7c1e0b5a9d3f4e2a8b6c0d1e2f3a4b5c"


def _order(settings: Settings, order_no: str) -> Order:
    with transaction(settings.database_url) as session:
        order = session.scalar(select(Order).where(Order.order_no == order_no))
        assert order is not None
        return order


def _moves(settings: Settings, order_no: str) -> list[tuple[str | None, str, str]]:
    with transaction(settings.database_url) as session:
        rows = session.execute(select(OrderEvent.from_status, OrderEvent.to_status, OrderEvent.source)
                               .where(OrderEvent.order_no == order_no, OrderEvent.from_status.is_not(None))
                               .order_by(OrderEvent.id)).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def _token(settings: Settings, pay_token: str) -> PayToken | None:
    with transaction(settings.database_url) as session:
        return session.scalar(select(PayToken).where(PayToken.pay_token == pay_token))


def _paid_row(order: Order, pay_status: str = "1A400") -> object:
    return query_row(order_no=order.order_no, amount=order.amount, ts_no=order.ts_no or "",
                     pay_status=pay_status, pay_type=order.pay_type)


# -- orders show ----------------------------------------------------------------------------------


def test_show_prints_status_events_bank_calls_and_tokens_as_one_timeline(
    cli: FlaskCliRunner, bank: FakeBankClient, settings: Settings, new_order: Callable[..., Order]
) -> None:
    # given an order paid through a replayed token (one bank call, one token, one move)
    order = new_order("SHOW01", 1200)
    bank.script_pay(TOKEN, pay_result(order_no="SHOW01", amount=order.amount, ts_no=order.ts_no or "",
                                      pay_token=TOKEN))
    assert cli.invoke(args=["tokens", "replay", TOKEN, "--now"]).exit_code == 0

    # when the operator asks what happened
    result = cli.invoke(args=["orders", "show", "SHOW01"])

    # then one timeline tells the whole story
    assert result.exit_code == 0, result.output
    assert "order SHOW01: PAID" in result.output
    assert "TWD 1,200.00" in result.output
    assert "(new) -> pending" in result.output
    assert "source=api" in result.output
    assert "pending -> paid" in result.output
    assert "source=operator" in result.output
    assert "OrderPayQuery" in result.output
    assert " ok " in result.output
    assert "7c1e0b5a… received via operator" in result.output
    assert TOKEN not in result.output  # a PayToken is shown shortened only


def test_show_unknown_order_exits_1(cli: FlaskCliRunner) -> None:
    result = cli.invoke(args=["orders", "show", "NOPE01"])
    assert result.exit_code == 1
    assert "order NOPE01 not found" in result.output


def test_show_malformed_order_no_is_a_usage_error(cli: FlaskCliRunner) -> None:
    result = cli.invoke(args=["orders", "show", "bad order; drop"])
    assert result.exit_code == 2
    assert "OrderNo" in result.output


# -- orders stuck ---------------------------------------------------------------------------------


def test_stuck_lists_old_pending_orders_and_unresolved_tokens_but_not_fresh_ones(
    cli: FlaskCliRunner, settings: Settings, new_order: Callable[..., Order], broker: FakeEnqueuer
) -> None:
    # given one order two hours old, one just created, and a token received two hours ago, unresolved
    new_order("OLD001")
    new_order("NEW001")
    broker.up = False
    cli.invoke(args=["tokens", "replay", TOKEN])
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    with transaction(settings.database_url) as session:
        session.execute(update(Order).where(Order.order_no == "OLD001").values(created_at=two_hours_ago))
        session.execute(update(PayToken).values(first_received_at=two_hours_ago))

    # when
    result = cli.invoke(args=["orders", "stuck", "--older-than", "1h"])

    # then
    assert result.exit_code == 0, result.output
    assert "pending orders older than 1h: 1" in result.output
    assert "OLD001" in result.output
    assert "NEW001" not in result.output
    assert "unresolved pay tokens older than 1h: 1" in result.output
    assert "7c1e0b5a…" in result.output


@pytest.mark.parametrize("age", ["soon", "5x", "-3m", ""])
def test_stuck_rejects_a_malformed_age_as_usage_error(cli: FlaskCliRunner, age: str) -> None:
    result = cli.invoke(args=["orders", "stuck", "--older-than", age])
    assert result.exit_code == 2
    assert "duration" in result.output


# -- orders requery -------------------------------------------------------------------------------


def test_requery_settles_a_paid_order_as_the_operator_and_records_the_call(
    cli: FlaskCliRunner, bank: FakeBankClient, settings: Settings, new_order: Callable[..., Order]
) -> None:
    order = new_order("RQ0001", 880)
    bank.script_query("RQ0001", query_result(_paid_row(order)))

    result = cli.invoke(args=["orders", "requery", "RQ0001"])

    assert result.exit_code == 0, result.output
    assert "order RQ0001: pending -> paid (moved" in result.output
    assert _order(settings, "RQ0001").status == "paid"
    assert _moves(settings, "RQ0001") == [("pending", "paid", "operator")]
    with transaction(settings.database_url) as session:
        calls = session.execute(select(BankCall.api_service, BankCall.key, BankCall.outcome)).all()
    assert [tuple(c) for c in calls] == [("OrderQuery", "RQ0001", "ok")]


def test_requery_twice_changes_nothing_the_second_time(
    cli: FlaskCliRunner, bank: FakeBankClient, settings: Settings, new_order: Callable[..., Order]
) -> None:
    order = new_order("RQ0002")
    bank.script_query("RQ0002", query_result(_paid_row(order)))
    assert cli.invoke(args=["orders", "requery", "RQ0002"]).exit_code == 0

    again = cli.invoke(args=["orders", "requery", "RQ0002"])

    assert again.exit_code == 0, again.output
    assert "paid -> paid (unchanged" in again.output
    assert _moves(settings, "RQ0002") == [("pending", "paid", "operator")]


def test_requery_when_the_bank_times_out_exits_1_and_leaves_the_order_pending(
    cli: FlaskCliRunner, bank: FakeBankClient, settings: Settings, new_order: Callable[..., Order]
) -> None:
    new_order("RQ0003")
    bank.script_query("RQ0003", BankTimeout("OrderQuery: read timed out", service="OrderQuery"))

    result = cli.invoke(args=["orders", "requery", "RQ0003"])

    assert result.exit_code == 1
    assert "OrderQuery for RQ0003 failed" in result.output
    assert _order(settings, "RQ0003").status == "pending"
    with transaction(settings.database_url) as session:
        outcomes = session.scalars(select(BankCall.outcome)).all()
    assert outcomes == ["transport_error"]


def test_requery_of_an_order_the_bank_does_not_know_exits_1_and_keeps_the_record_of_the_call(
    cli: FlaskCliRunner, bank: FakeBankClient, settings: Settings, new_order: Callable[..., Order]
) -> None:
    new_order("RQ0004")
    bank.script_query("RQ0004", query_result())

    result = cli.invoke(args=["orders", "requery", "RQ0004"])

    assert result.exit_code == 1
    assert "the bank has no order RQ0004" in result.output
    assert _order(settings, "RQ0004").status == "pending"
    with transaction(settings.database_url) as session:  # the question was asked: it is on record
        calls = session.execute(select(BankCall.api_service, BankCall.key, BankCall.outcome)).all()
    assert [tuple(c) for c in calls] == [("OrderQuery", "RQ0004", "ok")]


def test_requery_of_an_unknown_order_exits_1_without_calling_the_bank(
    cli: FlaskCliRunner, bank: FakeBankClient
) -> None:
    result = cli.invoke(args=["orders", "requery", "NOPE02"])
    assert result.exit_code == 1
    assert bank.order_queries == []


# -- tokens replay --------------------------------------------------------------------------------


def test_replay_records_the_token_as_operator_and_enqueues_it(
    cli: FlaskCliRunner, broker: FakeEnqueuer, settings: Settings
) -> None:
    result = cli.invoke(args=["tokens", "replay", TOKEN])

    assert result.exit_code == 0, result.output
    token = _token(settings, TOKEN)
    assert token is not None
    assert token.source == "operator"
    assert token.state == "received"
    assert broker.sent == [token.id]
    assert token.last_enqueued_at is not None
    assert "recorded and enqueued" in result.output


def test_replay_with_the_broker_down_keeps_the_token_and_exits_1(
    cli: FlaskCliRunner, broker: FakeEnqueuer, settings: Settings
) -> None:
    broker.up = False

    result = cli.invoke(args=["tokens", "replay", TOKEN])

    assert result.exit_code == 1
    assert "broker is unreachable" in result.output
    token = _token(settings, TOKEN)
    assert token is not None
    assert token.state == "received"
    # stamped by the receipt like any: the sweep sends it again SWEEP_GRACE later
    assert token.last_enqueued_at == token.last_received_at


def test_replay_now_resolves_inline_and_a_second_replay_does_nothing(
    cli: FlaskCliRunner, bank: FakeBankClient, broker: FakeEnqueuer, settings: Settings,
    new_order: Callable[..., Order],
) -> None:
    order = new_order("TK0001", 310, "C")
    bank.script_pay(TOKEN, pay_result(order_no="TK0001", amount=order.amount, ts_no=order.ts_no or "",
                                      pay_token=TOKEN, pay_type="C"))

    first = cli.invoke(args=["tokens", "replay", TOKEN, "--now"])
    second = cli.invoke(args=["tokens", "replay", TOKEN])

    assert first.exit_code == 0, first.output
    assert "settled" in first.output
    assert _moves(settings, "TK0001") == [("pending", "paid", "operator")]
    assert second.exit_code == 0, second.output
    assert "already resolved (order TK0001); nothing to do" in second.output
    assert broker.sent == []  # neither replay needed the broker
    assert len(bank.pay_queries) == 1


def test_replay_now_when_the_bank_times_out_exits_1_and_counts_the_attempt(
    cli: FlaskCliRunner, bank: FakeBankClient, settings: Settings
) -> None:
    bank.script_pay(TOKEN, BankTimeout("OrderPayQuery: read timed out", service="OrderPayQuery"))

    result = cli.invoke(args=["tokens", "replay", TOKEN, "--now"])

    assert result.exit_code == 1
    assert "transient" in result.output
    token = _token(settings, TOKEN)
    assert token is not None
    assert token.state == "received"
    assert token.attempts == 1


def _park_untrusted(cli: FlaskCliRunner, bank: FakeBankClient, token: str = TOKEN, *then: object) -> None:
    """A token resolved against a reply whose Sign does not verify: parked as untrusted.

    `then`: the bank's replies to the token's later OrderPayQuery calls.
    """
    bad = SignatureMismatch("OrderPayQuery: Sign does not verify", service="OrderPayQuery")
    bank.script_pay(token, bad, *then)  # type: ignore[arg-type]
    result = cli.invoke(args=["tokens", "replay", token, "--now"])
    assert result.exit_code == 1, result.output
    assert "protocol_error" in result.output


def test_an_untrusted_token_is_listed_by_stuck_at_any_age_and_noted_by_show(
    cli: FlaskCliRunner, bank: FakeBankClient, settings: Settings, new_order: Callable[..., Order]
) -> None:
    # given a pending order and a fresh token whose bank reply failed verification
    new_order("UT0001")
    _park_untrusted(cli, bank)
    token = _token(settings, TOKEN)
    assert token is not None
    assert token.state == "untrusted"

    # when the operator looks for stuck work (with an age the token has not reached) and at the order
    stuck = cli.invoke(args=["orders", "stuck", "--older-than", "1h"])
    show = cli.invoke(args=["orders", "show", "UT0001"])

    # then the token is listed as untrusted with its error, not as unresolved, and the order notes it
    assert stuck.exit_code == 0, stuck.output
    assert "unresolved pay tokens older than 1h: 0" in stuck.output
    assert "untrusted pay tokens (bank reply failed verification; not retried until replayed): 1" \
        in stuck.output
    assert "7c1e0b5a…" in stuck.output
    assert "SignatureMismatch" in stuck.output
    assert "tokens replay --untrusted" in stuck.output
    assert TOKEN not in stuck.output
    assert show.exit_code == 0, show.output
    assert "note: 1 untrusted pay token(s)" in show.output


def test_replay_sends_an_untrusted_token_again_and_its_payment_settles_once(
    cli: FlaskCliRunner, bank: FakeBankClient, broker: FakeEnqueuer, settings: Settings,
    new_order: Callable[..., Order],
) -> None:
    # given an untrusted token for a paid order, and a bank whose replies verify again
    order = new_order("UT0002", 420)
    _park_untrusted(cli, bank, TOKEN, pay_result(order_no="UT0002", amount=order.amount,
                                                 ts_no=order.ts_no or "", pay_token=TOKEN))

    # when the operator replays it deliberately, then replays it once more
    first = cli.invoke(args=["tokens", "replay", TOKEN, "--now"])
    second = cli.invoke(args=["tokens", "replay", TOKEN, "--now"])

    # then the first is sent again and settles the order; the second has nothing to do
    assert first.exit_code == 0, first.output
    assert "was untrusted (SignatureMismatch" in first.output
    assert "settled" in first.output
    assert _moves(settings, "UT0002") == [("pending", "paid", "operator")]
    assert "already resolved (order UT0002); nothing to do" in second.output
    assert len(bank.pay_queries) == 2
    assert broker.sent == []


def test_replay_untrusted_enqueues_every_untrusted_token_and_only_those(
    cli: FlaskCliRunner, bank: FakeBankClient, broker: FakeEnqueuer, settings: Settings
) -> None:
    # given two untrusted tokens and one still waiting in received
    other, waiting = "b" * 40, "c" * 40
    _park_untrusted(cli, bank, TOKEN)
    _park_untrusted(cli, bank, other)
    broker.up = False
    cli.invoke(args=["tokens", "replay", waiting])
    broker.up = True

    # when the operator replays the untrusted ones
    result = cli.invoke(args=["tokens", "replay", "--untrusted"])

    # then both are received again and enqueued; the waiting one is left to the sweep
    assert result.exit_code == 0, result.output
    assert "untrusted tokens sent again: 2 of 2" in result.output
    parked = [_token(settings, t) for t in (TOKEN, other)]
    assert [t.state for t in parked if t] == ["received", "received"]
    assert broker.sent == [t.id for t in parked if t]
    assert "no untrusted pay tokens" in cli.invoke(args=["tokens", "replay", "--untrusted"]).output


def test_a_dead_token_is_listed_by_stuck_and_replay_dead_revives_it_with_attempts_reset(
    cli: FlaskCliRunner, bank: FakeBankClient, broker: FakeEnqueuer, settings: Settings
) -> None:
    # given a token that failed every allowed resolution
    bank.script_pay(TOKEN, BankTimeout("OrderPayQuery: read timed out", service="OrderPayQuery"))
    cli.invoke(args=["tokens", "replay", TOKEN, "--now"])
    with transaction(settings.database_url) as s:
        s.execute(update(PayToken).where(PayToken.pay_token == TOKEN)
                  .values(state="dead", attempts=settings.max_attempts))

    # when the operator looks for stuck work, then it is listed as dead with its error
    stuck = cli.invoke(args=["orders", "stuck", "--older-than", "1h"])
    assert "dead pay tokens (failed every allowed resolution; not retried until replayed): 1" in stuck.output
    assert "BankTimeout" in stuck.output
    assert "tokens replay --dead" in stuck.output

    # and when it is replayed, it is received again, attempts reset, and enqueued
    result = cli.invoke(args=["tokens", "replay", "--dead"])
    assert result.exit_code == 0, result.output
    assert "dead tokens sent again: 1 of 1" in result.output
    token = _token(settings, TOKEN)
    assert token is not None
    assert (token.state, token.attempts) == ("received", 0)
    assert broker.sent == [token.id]


@pytest.mark.parametrize("args", [["tokens", "replay"], ["tokens", "replay", TOKEN, "--untrusted"]])
def test_replay_needs_a_token_or_untrusted_but_not_both(cli: FlaskCliRunner, args: list[str]) -> None:
    result = cli.invoke(args=args)
    assert result.exit_code == 2
    assert "PAY_TOKEN or --untrusted" in result.output


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "semi;colon"])
def test_replay_rejects_a_malformed_token_as_usage_error(cli: FlaskCliRunner, bad: str) -> None:
    result = cli.invoke(args=["tokens", "replay", bad])
    assert result.exit_code == 2
    assert "PayToken" in result.output


# -- sweep run ------------------------------------------------------------------------------------


def test_sweep_run_settles_what_the_bank_reports_paid_and_prints_counts(
    cli: FlaskCliRunner, bank: FakeBankClient, settings: Settings, new_order: Callable[..., Order]
) -> None:
    # given a pending order the bank reports paid in its window query
    order = new_order("SW0001", 640)
    bank.script_query(None, query_result(_paid_row(order)))

    result = cli.invoke(args=["sweep", "run"])

    assert result.exit_code == 0, result.output
    assert "settled=1" in result.output
    assert "errors=0" in result.output
    assert _moves(settings, "SW0001") == [("pending", "paid", "sweep")]


def test_an_untrusted_token_is_not_requeued_but_its_order_is_settled_by_the_sweep(
    cli: FlaskCliRunner, bank: FakeBankClient, broker: FakeEnqueuer, settings: Settings,
    new_order: Callable[..., Order],
) -> None:
    # given a paid order whose token's OrderPayQuery reply failed verification (SWEEP_GRACE is 0 here)
    order = new_order("UT0003", 530)
    _park_untrusted(cli, bank)
    bank.script_query(None, query_result(_paid_row(order)))

    # when the sweep runs
    result = cli.invoke(args=["sweep", "run"])

    # then the token is not sent again, yet the payment is not lost: OrderQuery settles the order
    assert result.exit_code == 0, result.output
    assert "requeued=0" in result.output
    assert broker.sent == []
    assert _moves(settings, "UT0003") == [("pending", "paid", "sweep")]
    token = _token(settings, TOKEN)
    assert token is not None
    assert token.state == "untrusted"


def test_sweep_run_with_the_bank_down_reports_errors_and_exits_1(
    cli: FlaskCliRunner, bank: FakeBankClient, settings: Settings, new_order: Callable[..., Order]
) -> None:
    new_order("SW0002")
    bank.script_query(None, BankTimeout("OrderQuery: connect timed out", service="OrderQuery"))

    result = cli.invoke(args=["sweep", "run"])

    assert result.exit_code == 1
    assert "error(s)" in result.output
    assert _order(settings, "SW0002").status == "pending"


# -- db upgrade -----------------------------------------------------------------------------------


def test_db_upgrade_creates_the_schema_on_an_empty_sqlite_file_and_is_idempotent(
    tmp_path: object, broker: FakeEnqueuer
) -> None:
    from pathlib import Path

    from core.settings import load_settings
    from webhook import create_app

    url = f"sqlite:///{Path(str(tmp_path)) / 'empty.db'}"
    runner = create_app(load_settings({"DATABASE_URL": url}), enqueuer=broker,
                        configure_logs=False).test_cli_runner()

    first = runner.invoke(args=["db", "upgrade"])
    second = runner.invoke(args=["db", "upgrade"])

    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    assert "database schema at revision" in second.output
    with transaction(url) as session:
        assert session.scalar(select(Order.id)) is None  # the table exists and is empty


@pytest.mark.integration
def test_db_upgrade_creates_the_schema_on_an_empty_postgresql_database(
    postgres_admin_url: str, broker: FakeEnqueuer
) -> None:
    from core.settings import load_settings
    from tests.support import services
    from webhook import create_app

    url = services.create_database(postgres_admin_url, migrated=False)
    try:
        runner = create_app(load_settings({"DATABASE_URL": url}), enqueuer=broker,
                            configure_logs=False).test_cli_runner()

        result = runner.invoke(args=["db", "upgrade"])

        assert result.exit_code == 0, result.output
        assert "(postgresql)" in result.output
        with transaction(url) as session:
            assert session.scalar(select(Order.id)) is None
    finally:
        from core.db import dispose_engines

        dispose_engines()
        services.drop_database(url)
