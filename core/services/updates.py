"""Conditional UPDATEs and their row counts: how the services learn whether this call made a change."""

from __future__ import annotations

from sqlalchemy import Connection, CursorResult, Update
from sqlalchemy.orm import Session


def core_connection(session: Session) -> Connection:
    """The session's connection, for a Core statement in its transaction: flushed first, as
    session.execute would, so objects the caller added are visible; without the ORM's execution path,
    which costs more than the statement on a settlement's hot path (issue 17)."""
    session.flush()
    return session.connection()


def rows_updated(session: Session, stmt: Update) -> int:
    """Run `stmt` in the session's transaction (autoflush first, as any execute) and return how many
    rows it changed: the answer to "did this call win the race?" for every `... WHERE state = x`.

    Session.execute is typed as returning a plain Result; an UPDATE's result is a CursorResult, which
    carries the rowcount, so the type is checked here rather than assumed.
    """
    result = session.execute(stmt.execution_options(synchronize_session=False))
    if not isinstance(result, CursorResult):
        raise TypeError(f"an UPDATE returned {type(result).__name__}, not a CursorResult")
    return result.rowcount
