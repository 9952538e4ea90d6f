"""Every bank call becomes a BankCall row (docs/architecture.md): the client's observer writes them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any, cast

from sqlalchemy import Insert, Table, bindparam, insert
from sqlalchemy.orm import Session

from core.driver import prebuilt
from core.models import BankCall
from core.services.updates import run
from core.sinopac.types import BankCallRecord

_MAX_ERROR = 500
_TABLE = cast(Table, BankCall.__table__)
_COLUMNS = ("api_service", "key", "started_at", "duration_ms", "http_status", "outcome", "error", "shop_no",
            "key_set")
_MAX_ROWS = 8  # rows per INSERT statement; a settlement records two calls


@cache
def _insert(rows: int) -> Insert:
    """One INSERT of `rows` rows, built once per count with bind parameters `<column>_<i>`: a plain
    execution, not SQLAlchemy's insertmanyvalues batching (twice the CPU for a settlement's two rows)."""
    return prebuilt(insert(_TABLE).values([{name: bindparam(f"{name}_{i}", type_=_TABLE.c[name].type)
                                            for name in _COLUMNS} for i in range(rows)]))


def _row(call: BankCallRecord) -> dict[str, Any]:
    """The row of one call. The client already shortens PayTokens in `key` and keeps secrets out of
    `error`; this only bounds the sizes so a huge error text cannot break the insert."""
    started = call.started_at if isinstance(call.started_at, datetime) else datetime.now(UTC)
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    return {
        "api_service": call.api_service[:32],
        "key": (call.key or "")[:128],
        "started_at": started,
        "duration_ms": max(0, int(call.duration_ms)),
        "http_status": call.http_status,
        "outcome": call.outcome,
        "error": call.error[:_MAX_ERROR] if call.error else None,
        "shop_no": call.shop_no[:20] or None,
        "key_set": call.key_set[:8] or None,
    }


def record_calls(session: Session, calls: Sequence[BankCallRecord]) -> None:
    """Insert the rows of `calls` in the session's transaction: one Core INSERT on the session's
    connection (no ORM bulk-insert machinery, ~5% of a worker's CPU per settlement), so a worker pays
    little for its bookkeeping. Flushed first, as session.execute would."""
    for start in range(0, len(calls), _MAX_ROWS):
        chunk = calls[start:start + _MAX_ROWS]
        params = {f"{name}_{i}": value for i, call in enumerate(chunk) for name, value in _row(call).items()}
        run(session, _insert(len(chunk)), params)


def recorder(session: Session) -> Callable[[BankCallRecord], None]:
    """An observer for QPayClient that inserts one BankCall per call in `session` (the caller commits)."""

    def record(call: BankCallRecord) -> None:
        record_calls(session, [call])

    return record
