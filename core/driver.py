"""Prebuilt Core statements straight on psycopg2, inside SQLAlchemy's own connections and transactions.

Why: SQLAlchemy's execution path (an execution context, result metadata, processor lookups) costs
0.05–0.1 ms of CPU per statement, more than psycopg2's own call; a settlement runs seven (the token
read and six writes), and the database was over a quarter of a worker's CPU per settlement (issue 17,
bench/RESULTS.md §6.10). The statements on that path are
built once (module constants, or cached per shape) and marked so with `prebuilt()`; each is compiled
here once per (server, parameter names) and run on the DBAPI cursor of the connection SQLAlchemy
checked out, in the transaction it began: commits, rollbacks and pooling stay SQLAlchemy's. A
statement built per call is not marked (compiling it per call would cost more than SQLAlchemy's own
structural cache) and goes through SQLAlchemy.

Nothing is lost on the way: bind and result types are processed as SQLAlchemy processes them
(UTCDateTime: aware UTC in and out), `before_cursor_execute` listeners still hear each statement,
driver errors are raised as SQLAlchemy's exception classes with parameters hidden, and a disconnect
invalidates the connection and recycles its pool, as Connection does. A statement this cannot run
exactly as SQLAlchemy would (another driver, an expanding IN list, a Python-side column default, a
callable bind value, positional paramstyles) goes through SQLAlchemy unchanged too.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Engine, Executable
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, MultipleResultsFound, NoResultFound, StatementError
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.elements import ClauseElement

__all__ = ["Compiled", "Rows", "compiled_for", "driver_error", "execute", "prebuilt", "run_compiled"]

_Processor = Callable[[Any], Any]
_PREBUILT = "qpay_prebuilt"
_S = TypeVar("_S", bound=Executable)


def prebuilt(stmt: _S) -> _S:
    """`stmt`, marked as built once and run many times: on psycopg2, execute() runs it on the driver."""
    return stmt.execution_options(**{_PREBUILT: True})


@dataclass(frozen=True, slots=True)
class Compiled:
    """A statement as the driver runs it: its SQL, the parameters it takes and how values are processed."""

    stmt: Executable  # kept, so its id cannot be reused by another statement while cached
    sql: str
    required: frozenset[str]  # the bind parameters without a value of their own
    defaults: Mapping[str, Any]  # the statement's own values (literals, `attempts + 1`)
    binds: tuple[tuple[str, _Processor], ...]  # the parameters whose type processes its value
    results: tuple[_Processor | None, ...]  # one per result column
    row: Callable[..., tuple[Any, ...]]  # a named tuple of the result columns

    def parameters(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters of one execution. A missing one is an error, never a silent NULL; one the
        statement does not name is ignored, as SQLAlchemy ignores it."""
        if not self.required <= given.keys():
            raise ValueError(f"statement parameters {sorted(self.required)} required, given {sorted(given)}")
        params = {**self.defaults, **given}
        for name, process in self.binds:
            params[name] = process(params[name])
        return params

    def rows(self, fetched: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        """The driver's rows as SQLAlchemy would return them: named, each value processed by its type."""
        results = self.results
        if fetched and len(fetched[0]) != len(results):
            raise RuntimeError(f"{len(fetched[0])} columns returned, {len(results)} expected")
        if not any(results):
            return [self.row(*r) for r in fetched]
        return [self.row(*(p(v) if p else v for p, v in zip(results, r, strict=True))) for r in fetched]


def _compile(stmt: Executable, dialect: Dialect, keys: Sequence[str]) -> Compiled | None:
    """`stmt` compiled for the driver with parameters named `keys` (an INSERT's columns come from
    them, as SQLAlchemy compiles it); None when only SQLAlchemy can run it exactly."""
    compiled: Any = cast(ClauseElement, stmt).compile(dialect=dialect, column_keys=list(keys))
    exact = (compiled.positional, compiled.insert_prefetch, compiled.update_prefetch,
             compiled.escaped_bind_names, compiled.literal_execute_params, compiled.post_compile_params)
    if any(exact):  # none of these: SQLAlchemy's execution context would change the SQL or values
        return None
    binds = compiled.binds
    if any(bp.callable is not None or bp.expanding for bp in binds.values()):
        return None
    defaults = {name: bp.value for name, bp in binds.items() if not bp.required}
    processors = []
    for name, bp in binds.items():
        process = bp.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            processors.append((name, process))
    columns = list(getattr(stmt, "exported_columns", ()))
    results = tuple(c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns)
    names = [c.key if isinstance(c.key, str) else f"_{i}" for i, c in enumerate(columns)]
    row: Callable[..., tuple[Any, ...]] = namedtuple("Row", names, rename=True) if names else tuple
    required = frozenset(binds) - defaults.keys()
    return Compiled(stmt, str(compiled), required, defaults, tuple(processors), results, row)


class Rows:
    """What a statement returned, fetched at once: rows (named tuples) and the affected row count."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def first(self) -> Any | None:
        return self._rows[0] if self._rows else None

    def all(self) -> list[Any]:
        return list(self._rows)

    def one(self) -> Any:
        if not self._rows:
            raise NoResultFound("the statement returned no row")
        if len(self._rows) > 1:
            raise MultipleResultsFound("the statement returned more than one row")
        return self._rows[0]

    def scalar(self) -> Any | None:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]


# (server version, statement, parameter names) -> how the driver runs it, or None: SQLAlchemy does.
# Bounded: only prebuilt statements are cached, and they are built once per shape.
_cache: dict[tuple[object, int, frozenset[str]], tuple[Executable, Compiled | None]] = {}


def compiled_for(dialect: Dialect, stmt: Executable, params: Mapping[str, Any]) -> Compiled | None:
    """How the driver runs `stmt` with parameters named as `params`; None when only SQLAlchemy can
    run it exactly. Compiled once per server version, statement and parameter names."""
    key = (dialect.server_version_info, id(stmt), frozenset(params))
    found = _cache.get(key)
    if found is None or found[0] is not stmt:
        found = _cache[key] = (stmt, _compile(stmt, dialect, sorted(params)))
    return found[1]


def execute(connection: Connection, stmt: Executable, params: Mapping[str, Any]) -> Rows:
    """Run `stmt` with `params` in `connection`'s transaction: a prebuilt statement on psycopg2
    straight on the driver, anything else through SQLAlchemy."""
    dialect = connection.dialect
    if dialect.driver != "psycopg2" or not stmt.get_execution_options().get(_PREBUILT):
        return _through_sqlalchemy(connection, stmt, params)
    compiled = compiled_for(dialect, stmt, params)
    if compiled is None:
        return _through_sqlalchemy(connection, stmt, params)
    # the checked-out DBAPI connection, in the transaction SQLAlchemy began
    return run_compiled(connection.connection, connection.engine, compiled, params, connection)


def run_compiled(pooled: PoolProxiedConnection, engine: Engine, compiled: Compiled, params: Mapping[str, Any],
                 connection: Connection | None = None) -> Rows:
    """Run a compiled statement on the cursor of `pooled` (a connection checked out of `engine`'s
    pool; `connection`: the SQLAlchemy Connection holding it, if any) as SQLAlchemy would: listeners
    told, errors as its classes, a disconnect invalidating the connection and the pool."""
    dialect = engine.dialect
    values = compiled.parameters(params)
    dbapi = pooled.dbapi_connection
    cursor = None
    try:
        if dbapi is None:  # invalidated meanwhile: what the pool's own proxy would raise
            raise dialect.loaded_dbapi.InterfaceError("connection already closed")
        cursor = dbapi.cursor()
        if connection is not None:
            for listener in connection.dispatch.before_cursor_execute:
                listener(connection, cursor, compiled.sql, values, None, False)
        cursor.execute(compiled.sql, values)
        # Rows only of a statement that selects or returns columns (an INSERT's implicit RETURNING of
        # its key is SQLAlchemy's, not the caller's), as SQLAlchemy's result would have them.
        fetched = cursor.fetchall() if compiled.results else []
        count = cursor.rowcount
    except dialect.loaded_dbapi.Error as exc:
        lost = dialect.is_disconnect(exc, dbapi, cursor)
        if lost:  # as Connection does: this connection is gone, and every pooled one older than now
            engine.pool._invalidate(pooled, exc)
            if connection is not None:
                connection.invalidate(exc)
        raise driver_error(engine, exc, compiled.sql, lost) from exc
    finally:
        if cursor is not None:
            with suppress(Exception):  # a dead connection's cursor may not close cleanly
                cursor.close()
    return Rows(compiled.rows(fetched), count)


def _through_sqlalchemy(connection: Connection, stmt: Executable, params: Mapping[str, Any]) -> Rows:
    result = connection.execute(stmt, dict(params))
    return Rows(list(result) if result.returns_rows else [], result.rowcount)


def driver_error(engine: Engine, exc: Exception, sql: str | None, lost: bool) -> StatementError:
    """A driver's error as SQLAlchemy raises it (IntegrityError, OperationalError, ...), parameters
    hidden, marked as an invalidated connection when it was a disconnect."""
    return DBAPIError.instance(sql, None, exc, engine.dialect.loaded_dbapi.Error, hide_parameters=True,
                               connection_invalidated=lost, dialect=engine.dialect)
