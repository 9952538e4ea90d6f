"""The receiver's one-statement unit on real PostgreSQL (core.db.statement): the upsert straight on
psycopg2 in autocommit gives the same record as a Session, is committed when it returns, and fails
with SQLAlchemy's own exception classes (the receiver's 503 and stale-connection retry rely on them)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest
from sqlalchemy import insert, text
from sqlalchemy.exc import IntegrityError, OperationalError

from core.db import dispose_engines, make_engine, session_factory, statement, transaction
from core.models import PayToken
from core.services.callbacks import record_callback

pytestmark = pytest.mark.integration

SHOP = "NA0001_001"
NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


@pytest.fixture
def url(pg_url: str) -> Iterator[str]:
    yield pg_url
    dispose_engines()


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg2://", "postgresql://")


def _row(url: str, token: str) -> tuple[int, str, datetime | None] | None:
    with psycopg2.connect(_dsn(url)) as conn, conn.cursor() as cur:  # another connection: committed?
        cur.execute("SELECT receipts, state, last_enqueued_at FROM pay_tokens WHERE pay_token = %s", (token,))
        found = cur.fetchone()
    conn.close()
    return (found[0], found[1], found[2]) if found else None


def test_the_driver_path_records_what_a_session_records(url: str) -> None:
    with statement(url) as one:
        assert one.dialect == "postgresql"
        first = record_callback(one, shop_no=SHOP, pay_token="drv_1", source="backend", now=NOW)
        again = record_callback(one, shop_no=SHOP, pay_token="drv_1", source="return",
                                now=NOW + timedelta(seconds=5))
    with transaction(url) as session:
        via_session = record_callback(session, shop_no=SHOP, pay_token="ses_1", source="backend", now=NOW)
    facts = (first.created, first.needs_enqueue, first.receipts, first.state, first.queued_at)
    assert facts == (True, True, 1, "received", NOW)
    assert facts == (via_session.created, via_session.needs_enqueue, via_session.receipts,
                     via_session.state, via_session.queued_at)
    assert (again.created, again.needs_enqueue, again.receipts) == (False, False, 2)  # within the grace
    assert _row(url, "drv_1") == (2, "received", NOW)


def test_the_statement_is_committed_when_it_returns(url: str) -> None:
    with statement(url) as one:
        record_callback(one, shop_no=SHOP, pay_token="drv_commit", source="backend", now=NOW)
        # still inside the block: another connection already sees the row (autocommit)
        assert _row(url, "drv_commit") == (1, "received", NOW)


def test_a_failing_statement_raises_sqlalchemys_class_and_leaves_the_pool_usable(url: str) -> None:
    table = PayToken.__table__
    duplicate = insert(PayToken).values(shop_no=SHOP, pay_token="drv_dup", source="backend", receipts=1,
                                     first_received_at=NOW, last_received_at=NOW, state="received",
                                     attempts=0).returning(table.c.id)
    params = duplicate.compile().params
    with statement(url) as one:
        one.one(duplicate, params)
        with pytest.raises(IntegrityError) as caught:
            one.one(duplicate, params)
        assert not caught.value.connection_invalidated
        assert "drv_dup" not in str(caught.value.params)  # parameters are hidden, as on the engine
        # the pooled connection went back clean: the next statement works
        assert record_callback(one, shop_no=SHOP, pay_token="drv_after", source="backend").created


def test_parameters_must_match_the_statement(url: str) -> None:
    stmt = text("SELECT 1 WHERE :a = :a")
    with statement(url) as one, pytest.raises(ValueError, match="parameters"):
        one.one(stmt, {"b": 1})


def test_a_connection_killed_by_the_server_fails_once_as_invalidated_then_recovers(url: str) -> None:
    with statement(url) as one:
        record_callback(one, shop_no=SHOP, pay_token="drv_k1", source="backend")  # a pooled connection
    # the server ends every connection of this database (what a restart does to them)
    database = url.rsplit("/", 1)[1]
    admin = make_engine(url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": database})
    admin.dispose()
    with statement(url) as one:
        with pytest.raises(OperationalError) as caught:
            record_callback(one, shop_no=SHOP, pay_token="drv_k2", source="backend")
        assert caught.value.connection_invalidated  # the receiver retries once on a fresh connection
        assert record_callback(one, shop_no=SHOP, pay_token="drv_k2", source="backend").created
    assert _row(url, "drv_k2") is not None


def test_an_unreachable_server_raises_operational_error(url: str) -> None:
    dead = "postgresql+psycopg2://postgres@127.0.0.1:1/nowhere?connect_timeout=2"
    with statement(dead) as one, pytest.raises(OperationalError):
        record_callback(one, shop_no=SHOP, pay_token="drv_dead", source="backend")


def test_the_ordinary_engine_is_untouched_by_the_autocommit_pool(url: str) -> None:
    with statement(url) as one:
        record_callback(one, shop_no=SHOP, pay_token="drv_iso", source="backend")
    engine = session_factory(url).kw["bind"]
    with engine.connect() as conn:
        assert conn.connection.dbapi_connection.autocommit is False  # type: ignore[union-attr]
