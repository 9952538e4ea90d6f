"""The callback log and outbox: every PayToken the bank or a browser presents, recorded once.

record_callback is an upsert (INSERT ... ON CONFLICT (pay_token) DO UPDATE) through the dialect's own
insert, so twenty simultaneous deliveries of one new token make one row with receipts == 20, on
PostgreSQL and on SQLite alike, without a read-then-write race.

A receipt queues the token only if it is not queued already: the first receipt stamps
`last_enqueued_at`, and a later one claims the token again (and is told to enqueue) only once that
stamp is older than the grace period, the sweep's own rule. The bank's resends and the browser's
return therefore cost one resolve task, not one each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, literal_column, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnClause

from core.db import OneStatement
from core.driver import prebuilt
from core.models import PayToken
from core.services.updates import rows_updated, run
from core.sinopac.fields import PAY_TOKEN_RE, SHOP_NO_RE
from core.states import Source


class CallbackError(ValueError):
    """The callback's fields cannot be recorded (empty, too long, or odd characters)."""


@dataclass(frozen=True)
class CallbackRecord:
    token_id: int
    created: bool  # True for the first receipt of this PayToken
    needs_enqueue: bool  # True if this receipt must queue the token (unresolved, not queued already)
    receipts: int = 1
    state: str = "received"
    queued_at: datetime | None = None  # last_enqueued_at after this receipt


def _build_upsert(insert: Any) -> Any:
    """The upsert as one Core statement with bound parameters: built once per dialect, so a call
    pays neither the statement construction nor the `excluded` alias (a third of the receiver's CPU
    when it was rebuilt per call), and its compiled form stays in the engine's cache. The constants
    are written into the SQL: bound, they were half of the parameters each call converts and sends."""
    table = PayToken.__table__
    one: ColumnClause[int] = literal_column("1")
    received: ColumnClause[str] = literal_column("'received'")
    stmt = insert(table).values(
        shop_no=bindparam("shop_no"),
        pay_token=bindparam("pay_token"),
        source=bindparam("source"),
        receipts=one,
        first_received_at=bindparam("at", type_=table.c.first_received_at.type),
        last_received_at=bindparam("at", type_=table.c.last_received_at.type),
        state=received,
        attempts=literal_column("0"),
        last_enqueued_at=bindparam("at", type_=table.c.last_enqueued_at.type),
    )
    # Claimed for a new enqueue only if still received and not queued within the grace period.
    requeue = (table.c.state == received) & or_(
        table.c.last_enqueued_at.is_(None),
        table.c.last_enqueued_at <= bindparam("cutoff", type_=table.c.last_enqueued_at.type),
    )
    return stmt.on_conflict_do_update(
        index_elements=[table.c.pay_token],
        set_={
            "receipts": table.c.receipts + one,
            "last_received_at": stmt.excluded.last_received_at,
            "last_enqueued_at": case((requeue, stmt.excluded.last_enqueued_at),
                                     else_=table.c.last_enqueued_at),
        },
    ).returning(table.c.id, table.c.receipts, table.c.state, table.c.last_enqueued_at)


_UPSERTS: dict[str, Any] = {}


def _upsert(name: str) -> Any:
    stmt = _UPSERTS.get(name)
    if stmt is None:
        if name == "postgresql":
            stmt = _build_upsert(postgresql.insert)
        elif name == "sqlite":
            stmt = _build_upsert(sqlite.insert)
        else:
            raise RuntimeError(f"record_callback supports PostgreSQL and SQLite, not {name}")
        _UPSERTS[name] = stmt = prebuilt(stmt)  # a race builds it twice; both are equal
    return stmt


def record_callback(
    session: Session | OneStatement,
    *,
    shop_no: str,
    pay_token: str,
    source: Source | str,
    now: datetime | None = None,
    grace: timedelta | float = 120.0,
) -> CallbackRecord:
    """Store (or count again) a PayToken in the caller's Session (the caller commits before answering
    the bank) or as the one statement of a core.db.statement unit.

    `needs_enqueue` is True for the first receipt, and for a later one only when the token is still
    received and was last queued more than `grace` ago (SWEEP_GRACE; 0: always, an operator's replay).
    """
    if not isinstance(pay_token, str) or not PAY_TOKEN_RE.fullmatch(pay_token):
        raise CallbackError("PayToken must be 1-128 letters, digits, _ or -")
    if not isinstance(shop_no, str) or not SHOP_NO_RE.fullmatch(shop_no):
        raise CallbackError("ShopNo must be 1-20 letters, digits or _")
    if source not in Source._value2member_map_:
        raise CallbackError(f"source must be one of {', '.join(Source)}")
    at = now if now is not None else datetime.now(UTC)
    window = grace if isinstance(grace, timedelta) else timedelta(seconds=float(grace))
    params = {"shop_no": shop_no, "pay_token": pay_token, "source": Source(source).value, "at": at,
              "cutoff": at - window}
    # Core, on the session's connection: same transaction, without the ORM's per-call execution
    # machinery (the statement touches no mapped objects). The receiver's unit (core.db.statement)
    # runs it as its own committed statement.
    if isinstance(session, Session):
        row: Sequence[Any] = run(session, _upsert(session.get_bind().dialect.name), params).one()
    else:
        row = session.one(_upsert(session.dialect), params)
    token_id, receipts, state, queued_at = row
    return CallbackRecord(
        token_id=token_id,
        created=receipts == 1,
        needs_enqueue=state == "received" and queued_at == at,
        receipts=receipts,
        state=state,
        queued_at=queued_at,
    )


def mark_enqueued(session: Session, token_id: int, now: datetime | None = None) -> None:
    """Note that a resolve task was sent, so the sweep waits a grace period before sending another."""
    at = now if now is not None else datetime.now(UTC)
    session.execute(
        update(PayToken)
        .where(PayToken.id == token_id)
        .values(last_enqueued_at=at)
        .execution_options(synchronize_session=False)
    )


def unmark_enqueued(session: Session, token_id: int, queued_at: datetime) -> bool:
    """Undo a receipt's `last_enqueued_at` when its publish failed (the broker is down), so that the
    bank's next resend queues the token at once instead of waiting for the sweep. Conditional: a
    later stamp (another receipt, the sweep) is left alone."""
    stmt = update(PayToken).where(PayToken.id == token_id, PayToken.last_enqueued_at == queued_at)
    return bool(rows_updated(session, stmt.values(last_enqueued_at=None)))
