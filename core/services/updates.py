"""Conditional UPDATEs and their row counts: how the services learn whether this call made a change."""

from __future__ import annotations

from sqlalchemy import CursorResult, Update
from sqlalchemy.orm import Session


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
