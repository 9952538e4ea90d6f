"""Engines and sessions. Only entrypoints (views, tasks, CLI) open transactions, via `transaction()`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for PostgreSQL (psycopg2) or SQLite (WAL + busy timeout, shared by processes)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {"timeout": 30})
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy emit BEGIN itself, so a transaction takes its write lock up front.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # IMMEDIATE: writers queue on busy_timeout instead of failing with "database is locked"
            # when two read-then-write transactions meet.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 5)
    kwargs.setdefault("max_overflow", 10)
    return create_engine(url, **kwargs)


_makers: dict[str, sessionmaker[Session]] = {}
_owner_pid = os.getpid()


def session_factory(url: str | None = None) -> sessionmaker[Session]:
    """Per-process factory: after a fork the child builds its own engine and pool."""
    global _owner_pid
    if url is None:
        from core.settings import get_settings

        url = get_settings().database_url
    if os.getpid() != _owner_pid:
        dispose_engines()
    maker = _makers.get(url)
    if maker is None:
        maker = _makers[url] = sessionmaker(bind=make_engine(url), expire_on_commit=False)
    return maker


def dispose_engines() -> None:
    """Forget inherited pools without closing the parent's sockets (Celery/gunicorn after fork)."""
    global _owner_pid
    for maker in _makers.values():
        bind = maker.kw["bind"]
        bind.dispose(close=os.getpid() == _owner_pid)
    _makers.clear()
    _owner_pid = os.getpid()


@contextmanager
def transaction(url: str | None = None) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = session_factory(url)()
    try:
        with session.begin():
            yield session
    finally:
        session.close()
