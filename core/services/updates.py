"""Conditional UPDATEs and their row counts: how the services learn whether this call made a change."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import BindParameter, Connection, Executable, Update, bindparam
from sqlalchemy.orm import Session

from core import driver


def bound_values(names: Iterable[str]) -> dict[str, BindParameter[Any]]:
    """`SET name = :v_name` for each name: the values of an UPDATE built once per set of names and
    cached (its cache key memoized), whose values come with each call (`value_params`)."""
    return {name: bindparam(f"v_{name}") for name in names}


def value_params(values: Mapping[str, object]) -> dict[str, object]:
    """The parameters of a `bound_values` UPDATE for these values."""
    return {f"v_{name}": value for name, value in values.items()}


def core_connection(session: Session) -> Connection:
    """The session's connection, for a Core statement in its transaction: flushed first, as
    session.execute would, so objects the caller added are visible; without the ORM's execution path,
    which costs more than the statement on a settlement's hot path (issue 17)."""
    session.flush()
    return session.connection()


def run(session: Session, stmt: Executable, params: Mapping[str, Any] | None = None) -> driver.Rows:
    """Run a Core statement in the session's transaction, on its connection (core_connection: flushed
    first); a prebuilt one (core.driver.prebuilt) straight on psycopg2. Its rows are fetched at once."""
    return driver.execute(core_connection(session), stmt, params or {})


def rows_updated(session: Session, stmt: Update, params: Mapping[str, object] | None = None) -> int:
    """Run `stmt` (with `params` for its bind parameters) in the session's transaction (`run`) and
    return how many rows it changed: the answer to "did this call win the race?" for every
    `... WHERE state = x`."""
    return run(session, stmt, params).rowcount
