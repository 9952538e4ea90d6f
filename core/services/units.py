"""Units of work: how services that call the bank get short transactions around, never across, a call."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

from sqlalchemy.orm import Session

from core.db import OneStatement

# Opens one transaction (commit on success, roll back on error): core.db.transaction is one.
UnitOfWork = Callable[[], AbstractContextManager[Session]]
# Runs one prebuilt statement as its own committed unit: core.db.statement is one (on PostgreSQL a
# single autocommit round trip instead of BEGIN, statement, COMMIT).
StatementUnit = Callable[[], AbstractContextManager[OneStatement]]


def as_unit_of_work(source: Session | UnitOfWork) -> UnitOfWork:
    """A unit of work from either. A Session means "everything in the caller's open transaction":
    for tests and callers without a lock to fear; entrypoints pass `transaction`, so that no database
    transaction (on SQLite: the write lock) is held while the bank is asked."""
    if isinstance(source, Session):
        return lambda: nullcontext(source)
    return source
