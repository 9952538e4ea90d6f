"""Engines and sessions. Only entrypoints (views, tasks, CLI) open transactions, via `transaction()`."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import Connection, Engine, Executable, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from core import driver

# PostgreSQL: seconds to wait for a TCP connection + authentication (libpq's connect_timeout), so an
# unreachable database host fails a callback fast (503, the bank resends) instead of holding it for
# the OS's ~2 min SYN retries. A `?connect_timeout=N` in DATABASE_URL overrides it.
CONNECT_TIMEOUT = 5
# PostgreSQL: a pooled connection idle this long is pinged before use (see ping_idle_connections).
PING_AFTER_IDLE = 10.0
_IDLE_SINCE = "qpay_idle_since"
# PostgreSQL: pooled connections kept per engine (plus up to 10 more under bursts). A threads worker
# pool holds one per task slot while it waits on the bank, so workers raise it (size_pool).
DEFAULT_POOL_SIZE = 5
_pool_size = DEFAULT_POOL_SIZE


def size_pool(slots: int) -> None:
    """Keep at least one pooled connection per task slot; engines built from now on use it."""
    global _pool_size
    _pool_size = max(DEFAULT_POOL_SIZE, slots)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for PostgreSQL (psycopg2) or SQLite (WAL + busy timeout, shared by processes).

    PostgreSQL extras: `ping_after_idle` (seconds, default PING_AFTER_IDLE; None: never ping) and a
    default connect_timeout of CONNECT_TIMEOUT seconds.
    """
    parsed = make_url(url)
    # A statement's parameters (PayTokens, amounts, error texts) stay out of exception messages, which
    # reach logs and stored errors; the SQL itself is still shown.
    kwargs.setdefault("hide_parameters", True)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {"timeout": 30})
        engine = create_engine(url, **kwargs)
        sqlite_pragmas(engine)
        return engine
    ping_after_idle = kwargs.pop("ping_after_idle", PING_AFTER_IDLE)
    if "connect_timeout" not in parsed.query:  # the URL's own ?connect_timeout=N wins
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT, **kwargs.get("connect_args", {})}
    kwargs.setdefault("pool_size", _pool_size)
    kwargs.setdefault("max_overflow", 10)
    engine = create_engine(url, **kwargs)
    if ping_after_idle is not None and not kwargs.get("pool_pre_ping"):
        ping_idle_connections(engine, ping_after_idle)
    return engine


def sqlite_pragmas(engine: Engine) -> None:
    """WAL and a busy timeout, so several processes share one SQLite file."""

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


def ping_idle_connections(engine: Engine, idle_seconds: float) -> None:
    """Ping a pooled connection on checkout only if it sat idle for `idle_seconds` or more.

    pool_pre_ping pays a `SELECT 1` round trip on every checkout (a fifth of the receiver's wall
    time under load). A connection in steady use has just proven itself; one that sat idle may have
    been cut meanwhile (a PostgreSQL restart, a proxy's or firewall's idle timeout), so only those
    are pinged. A failed ping invalidates the whole pool (a restart kills every connection) and the
    checkout reconnects. A connection that dies while busy fails its statement instead: SQLAlchemy
    sees the disconnect and invalidates the pool; the receiver records its callback once more on a
    fresh connection (webhook/callbacks.py), other callers see one database error.
    """

    @event.listens_for(engine, "checkin")
    def _idle_since(_dbapi_conn: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        if since is None or time.monotonic() - since < idle_seconds:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # any failure: treat it as a dead connection and reconnect
            raise _dead_pool(exc) from exc
        if not alive:
            raise _dead_pool(None)


def _dead_pool(cause: BaseException | None) -> DisconnectionError:
    reason = type(cause).__name__ if cause is not None else "no reply"
    err = DisconnectionError(f"idle connection failed its ping: {reason}")
    err.invalidate_pool = True  # SQLAlchemy then recycles every connection older than now
    return err


_makers: dict[str, sessionmaker[Session]] = {}
_drivers: dict[str, _DriverStatement] = {}  # URL -> the driver path of statement(), its own pool
_owner_pid = os.getpid()


def _url(url: str | None) -> str:
    if url is None:
        from core.settings import get_settings

        url = get_settings().database_url
    return url


def session_factory(url: str | None = None) -> sessionmaker[Session]:
    """Per-process factory: after a fork the child builds its own engine and pool."""
    global _owner_pid
    url = _url(url)
    if os.getpid() != _owner_pid:
        dispose_engines()
    maker = _makers.get(url)
    if maker is None:
        maker = _makers[url] = sessionmaker(bind=make_engine(url), expire_on_commit=False)
    return maker


def dispose_engines() -> None:
    """Forget inherited pools without closing the parent's sockets (Celery/gunicorn after fork)."""
    global _owner_pid
    binds = [maker.kw["bind"] for maker in _makers.values()] + [d.engine for d in _drivers.values()]
    for bind in binds:
        bind.dispose(close=os.getpid() == _owner_pid)
    _makers.clear()
    _drivers.clear()
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


@runtime_checkable
class OneStatement(Protocol):
    """A unit of work that is ONE statement: `one()` runs it, committed, and returns its first row."""

    dialect: str  # SQLAlchemy's name of the database ("postgresql", "sqlite"), to build the statement

    def one(self, stmt: Executable, params: Mapping[str, Any]) -> tuple[Any, ...]: ...


class _DriverStatement:
    """PostgreSQL: the statement straight on psycopg2, over a pool of autocommit connections.

    Autocommit makes the statement its own transaction: one round trip instead of BEGIN, statement,
    COMMIT. The server sends a statement's completion only after its implicit commit (postgres.c closes
    the transaction before CommandComplete), so a statement that returned is durable. The statement
    is a prebuilt Core one, compiled once and run on the driver by core/driver.py (errors as
    SQLAlchemy's classes, a disconnect invalidating the pool); the pool is the engine's own (its
    checkout pings an idle connection).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    def one(self, stmt: Executable, params: Mapping[str, Any]) -> tuple[Any, ...]:
        engine = self.engine
        error = engine.dialect.loaded_dbapi.Error
        try:
            raw = engine.raw_connection()  # the pool's own errors (timeout, failed ping) pass through
        except error as exc:  # the server refused or is unreachable: as Connection would raise it
            lost = engine.dialect.is_disconnect(exc, None, None)
            raise driver.driver_error(engine, exc, None, lost) from exc
        try:
            compiled = driver.compiled_for(engine.dialect, stmt, params)
            if compiled is None:
                raise RuntimeError("the statement cannot run on the driver (core/driver.py)")
            return tuple(driver.run_compiled(raw, engine, compiled, params).one())
        finally:
            raw.close()  # back to the pool (or discarded, if invalidated)


class _ConnectionStatement:
    """Any other database (SQLite, the demo's): the statement in an ordinary transaction."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.dialect = connection.dialect.name

    def one(self, stmt: Executable, params: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(self._connection.execute(stmt, params).one())


@contextmanager
def statement(url: str | None = None) -> Iterator[OneStatement]:
    """A unit of work that runs exactly one prebuilt Core statement (the callback receiver's upsert,
    the worker's read of a token: an ORM Session and a BEGIN/COMMIT per call cost more than the
    statement).
    PostgreSQL: see _DriverStatement (a second statement would be a second transaction: callers run
    one). Other databases: an ordinary transaction, committed when the block ends."""
    url = _url(url)
    engine: Engine = session_factory(url).kw["bind"]  # per process: after a fork, none is inherited
    unit = _drivers.get(url)
    if unit is None:
        if engine.dialect.driver != "psycopg2":
            with engine.begin() as conn:
                yield _ConnectionStatement(conn)
            return
        # Every connection of this pool is put in autocommit once, when it connects (a per-checkout
        # switch on the shared pool would cost a `SET default_transaction_isolation` at each checkin),
        # and none is rolled back at checkin: in autocommit no transaction is ever left open. A
        # statement holds its connection for one round trip, so the default size serves a worker's
        # 32 threads too (a burst borrows overflow connections, closed when returned).
        unit = _drivers[url] = _DriverStatement(
            make_engine(url, isolation_level="AUTOCOMMIT", pool_reset_on_return=None,
                        pool_size=DEFAULT_POOL_SIZE))
    yield unit
