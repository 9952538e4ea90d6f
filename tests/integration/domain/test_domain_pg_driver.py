"""core/driver.py on real PostgreSQL: a prebuilt Core statement run straight on psycopg2, inside the
Session's transaction, gives what SQLAlchemy gives (rows, processed types, row counts, defaults, error
classes) and stays in that transaction; anything it cannot run exactly goes through SQLAlchemy."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from sqlalchemy import Table, bindparam, event, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from core import driver
from core.db import dispose_engines, make_engine, session_factory, transaction
from core.models import PayToken
from core.services.updates import run

pytestmark = pytest.mark.integration

TOKENS = cast(Table, PayToken.__table__)
NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
READ = driver.prebuilt(select(TOKENS.c.id, TOKENS.c.pay_token, TOKENS.c.attempts, TOKENS.c.first_received_at)
                       .where(TOKENS.c.pay_token == bindparam("k_token")))
COUNT = driver.prebuilt(update(TOKENS)
                        .where(TOKENS.c.pay_token == bindparam("k_token"), TOKENS.c.state == "received")
                        .values(attempts=TOKENS.c.attempts + 1, last_error=bindparam("v_error")))
ADD = driver.prebuilt(insert(TOKENS))


@pytest.fixture
def url(pg_url: str) -> Iterator[str]:
    yield pg_url
    dispose_engines()


def _add(session: Session, token: str) -> None:
    run(session, ADD, {"shop_no": "NA0001_001", "pay_token": token, "source": "backend", "receipts": 1,
                       "first_received_at": NOW, "last_received_at": NOW, "state": "received", "attempts": 0})


def _heard(session: Session) -> list[str]:
    """The SQL of every statement the session's engine hears of from now on."""
    heard: list[str] = []

    def listen(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        heard.append(sql)

    event.listen(session.get_bind(), "before_cursor_execute", listen)
    return heard


def test_rows_are_what_sqlalchemy_returns_with_its_types_processed(url: str) -> None:
    with transaction(url) as session:
        session.execute(text("SET LOCAL TIME ZONE 'Asia/Taipei'"))  # the server answers in +08:00
        _add(session, "drv_a")
        ours = run(session, READ, {"k_token": "drv_a"}).one()
        theirs = session.connection().execute(READ, {"k_token": "drv_a"}).one()
    assert tuple(ours) == tuple(theirs)
    assert (ours.pay_token, ours.attempts, ours.first_received_at) == ("drv_a", 0, NOW)
    assert ours.first_received_at.utcoffset().total_seconds() == 0  # UTCDateTime: aware UTC out


def test_an_update_counts_its_rows_and_uses_the_statements_own_values(url: str) -> None:
    with transaction(url) as session:
        _add(session, "drv_u")
        assert run(session, COUNT, {"k_token": "drv_u", "v_error": "x"}).rowcount == 1
        assert run(session, COUNT, {"k_token": "nobody", "v_error": "x"}).rowcount == 0
        assert run(session, READ, {"k_token": "drv_u"}).one().attempts == 1  # attempts + 1, its literal


def test_the_statements_run_in_the_sessions_transaction(url: str) -> None:
    def failing_unit() -> None:
        with transaction(url) as session:
            _add(session, "drv_rollback")
            raise RuntimeError("the unit of work fails after the statement")

    with pytest.raises(RuntimeError):
        failing_unit()
    with transaction(url) as session:
        assert run(session, READ, {"k_token": "drv_rollback"}).first() is None  # rolled back with it


def test_a_missing_parameter_is_an_error_and_an_unknown_one_is_ignored(url: str) -> None:
    with transaction(url) as session:
        _add(session, "drv_p")
        with pytest.raises(ValueError, match="required"):
            run(session, COUNT, {"k_token": "drv_p"})
        assert run(session, READ, {"k_token": "drv_p", "other": 1}).one().pay_token == "drv_p"


def test_a_naive_datetime_is_refused_as_by_sqlalchemy(url: str) -> None:
    with transaction(url) as session, pytest.raises(ValueError, match="naive"):
        run(session, ADD, {"shop_no": "NA0001_001", "pay_token": "drv_naive", "source": "backend",
                           "receipts": 1, "first_received_at": NOW.replace(tzinfo=None),
                           "last_received_at": NOW, "state": "received", "attempts": 0})


def test_a_driver_error_is_sqlalchemys_class_with_parameters_hidden(url: str) -> None:
    with transaction(url) as session:
        _add(session, "drv_dup")
    with pytest.raises(IntegrityError) as caught, transaction(url) as session:
        _add(session, "drv_dup")
    assert not caught.value.connection_invalidated
    assert caught.value.hide_parameters
    assert "drv_dup" not in str(caught.value.params)
    with transaction(url) as session:  # the pool is fine
        assert run(session, READ, {"k_token": "drv_dup"}).one().pay_token == "drv_dup"


def test_a_killed_connection_fails_as_invalidated_and_the_next_unit_reconnects(url: str) -> None:
    with transaction(url) as session:
        _add(session, "drv_k")
    database = url.rsplit("/", 1)[1]
    admin = make_engine(url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:  # what a server restart does to every connection
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": database})
    admin.dispose()
    with pytest.raises(OperationalError) as caught, transaction(url) as session:
        run(session, READ, {"k_token": "drv_k"})
    assert caught.value.connection_invalidated
    with transaction(url) as session:
        assert run(session, READ, {"k_token": "drv_k"}).one().pay_token == "drv_k"


def test_listeners_still_hear_every_statement(url: str) -> None:
    with transaction(url) as session:
        heard = _heard(session)
        _add(session, "drv_l")
        run(session, READ, {"k_token": "drv_l"})
    assert [sql.split()[0] for sql in heard] == ["INSERT", "SELECT"]


def test_what_the_driver_cannot_run_exactly_goes_through_sqlalchemy(url: str) -> None:
    listed = TOKENS.c.pay_token.in_(bindparam("k_in", expanding=True))
    expanding = driver.prebuilt(select(TOKENS.c.pay_token).where(listed))
    built_per_call = select(TOKENS.c.pay_token).where(TOKENS.c.pay_token == bindparam("k_token"))
    engine = session_factory(url).kw["bind"]
    assert driver.compiled_for(engine.dialect, expanding, {"k_in": ["a"]}) is None
    with transaction(url) as session:
        _add(session, "drv_s1")
        _add(session, "drv_s2")
        found = run(session, expanding, {"k_in": ["drv_s1", "drv_s2", "none"]}).all()
        assert sorted(r.pay_token for r in found) == ["drv_s1", "drv_s2"]
        assert run(session, built_per_call, {"k_token": "drv_s1"}).scalar() == "drv_s1"
    assert driver.compiled_for(engine.dialect, READ, {"k_token": "x"}) is not None
