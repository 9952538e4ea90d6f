"""The callback log and outbox: every PayToken the bank or a browser presents, recorded once.

record_callback is an upsert (INSERT ... ON CONFLICT (pay_token) DO UPDATE) through the dialect's own
insert, so twenty simultaneous deliveries of one new token make one row with receipts == 20, on
PostgreSQL and on SQLite alike, without a read-then-write race.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core.models import PayToken
from core.states import Source

_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")  # fullmatch: "$" would let a trailing newline in
_SHOP = re.compile(r"[A-Za-z0-9_]{1,20}")


class CallbackError(ValueError):
    """The callback's fields cannot be recorded (empty, too long, or odd characters)."""


@dataclass(frozen=True)
class CallbackRecord:
    token_id: int
    created: bool  # True for the first receipt of this PayToken
    needs_enqueue: bool  # True while the token is unresolved
    receipts: int = 1
    state: str = "received"


def _insert(session: Session) -> Any:
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert
    if name == "sqlite":
        return sqlite.insert
    raise RuntimeError(f"record_callback supports PostgreSQL and SQLite, not {name}")


def record_callback(
    session: Session, *, shop_no: str, pay_token: str, source: Source | str, now: datetime | None = None
) -> CallbackRecord:
    """Store (or count again) a PayToken; the caller commits before answering the bank."""
    if not isinstance(pay_token, str) or not _TOKEN.fullmatch(pay_token):
        raise CallbackError("PayToken must be 1-128 letters, digits, _ or -")
    if not isinstance(shop_no, str) or not _SHOP.fullmatch(shop_no):
        raise CallbackError("ShopNo must be 1-20 letters, digits or _")
    if source not in Source._value2member_map_:
        raise CallbackError(f"source must be one of {', '.join(Source)}")
    src = Source(source).value
    at = now if now is not None else datetime.now(UTC)
    insert = _insert(session)
    stmt = insert(PayToken).values(
        shop_no=shop_no,
        pay_token=pay_token,
        source=src,
        receipts=1,
        first_received_at=at,
        last_received_at=at,
        state="received",
        attempts=0,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[PayToken.pay_token],
        set_={"receipts": PayToken.receipts + 1, "last_received_at": stmt.excluded.last_received_at},
    ).returning(PayToken.id, PayToken.receipts, PayToken.state)
    row = session.execute(stmt).one()
    return CallbackRecord(
        token_id=row.id,
        created=row.receipts == 1,
        needs_enqueue=row.state == "received",
        receipts=row.receipts,
        state=row.state,
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
