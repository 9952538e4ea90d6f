"""Order events for the shop: the transactional outbox and the pull feed.

Every order change writes one ShopEvent in the change's own transaction (`record_event`, called by
`transition()` and `create_order`): a change that rolls back announces nothing, and no committed change
lacks its event. The body is fixed here, once; every push and the feed send these same bytes.

The pull feed must never skip an event although ids are not handed out in commit order (transaction A
takes id 10, B takes id 11 and commits first: a reader paging by id would pass 11 and never see 10).
On PostgreSQL each event records its writing transaction's id (pg_current_xact_id()), and the feed
serves, in (txid, id) order, only events whose transaction is older than the oldest transaction still
running (the xmin of pg_current_snapshot()). Every such transaction has ended, so that set can no
longer grow below the reader's cursor; a transaction that commits later has a txid at or above that
xmin and lands after it. On SQLite writers are serialized (BEGIN IMMEDIATE), so ids follow commits.

After a commit the new event ids go to the process's publisher (set by the web and the workers: a
Celery message for the delivery task); without one, or with the broker down, the sweep relays them.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from typing import cast as typed

from sqlalchemy import (
    Table,
    Text,
    bindparam,
    cast,
    event,
    func,
    insert,
    literal,
    literal_column,
    select,
    tuple_,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from core.driver import prebuilt
from core.models import ShopEvent
from core.services.order_json import OrderView, order_detail
from core.services.updates import run
from core.settings import get_settings

log = logging.getLogger(__name__)

EVENT_PREFIX = "evt_"
_NEW_EVENTS = "qpay_new_events"
_EVENT_ID = re.compile(r"^evt_([1-9][0-9]{0,17})$")
_CURSOR = re.compile(r"^([0-9]{1,20})\.([0-9]{1,19})$")
MAX_FEED_LIMIT = 500
DEFAULT_FEED_LIMIT = 100
# The xmin of the statement's own snapshot: every transaction below it has committed or aborted.
_PG_HORIZON: ColumnElement[int] = literal_column("pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
_PG_TXID: ColumnElement[int] = literal_column("pg_current_xact_id()::text::bigint")

Publisher = Callable[[int], object]
_publisher: Publisher | None = None


def event_name(event_id: int) -> str:
    """`evt_<n>`: the id the shop sees (webhook-id, the body's id)."""
    return f"{EVENT_PREFIX}{event_id}"


def parse_event_name(value: str) -> int | None:
    """The numeric id of `evt_<n>` (or of a bare `<n>`), None if it is neither."""
    match = _EVENT_ID.match(value.strip()) or _EVENT_ID.match(EVENT_PREFIX + value.strip())
    return int(match.group(1)) if match else None


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


@dataclass(frozen=True)
class RecordedEvent:
    """An event just written: its id (the `evt_<n>` the shop sees) and its body."""

    id: int
    body: str


def record_event(
    session: Session, order: OrderView, from_status: str | None, to_status: str, source: str, at: datetime
) -> RecordedEvent:
    """Write the event of one order change into the caller's transaction; `order` as it now stands.

    The order is shown with the process's settings (get_settings(): the checkout link is built from
    CHECKOUT_SECRET), as the orders API of the same deployment shows it. Core statements, not an ORM
    entity: this runs in every settlement's write transaction (issue 17).
    """
    kind = f"order.{to_status}"
    rest = json.dumps({
        "type": kind,
        "timestamp": at.isoformat(),
        "data": {"order": order_detail(order, get_settings()), "from_status": from_status,
                 "to_status": to_status, "source": source},
    }, ensure_ascii=False, separators=(",", ":"))
    # The body names the event by its own row id, first: `{"id":"evt_<n>",` + the rest's members.
    head, tail = '{"id":"' + EVENT_PREFIX, '",' + rest[1:]
    params = {"order_no": order.order_no, "type": kind, "at": at, "head": head, "tail": tail}
    # Core on the session's connection (same transaction; flushed first, as session.execute would):
    # statements built once, no ORM unit of work for a row nobody here reads back.
    if _is_postgres(session):
        event_id = run(session, _PG_INSERT, params).scalar_one()
    else:  # SQLite has no sequence to take the id from first: INSERT, then the body
        event_id = run(session, _SQLITE_INSERT, params).scalar_one()
        run(session, _SQLITE_BODY, {"event_id": event_id, **params})
    session.info.setdefault(_NEW_EVENTS, []).append(event_id)
    return RecordedEvent(event_id, f"{head}{event_id}{tail}")


_TABLE = typed(Table, ShopEvent.__table__)


def _insert_columns() -> dict[str, ColumnElement[Any]]:
    table = _TABLE
    at = bindparam("at", type_=table.c.created_at.type)
    return {"order_no": bindparam("order_no", type_=table.c.order_no.type),
            "type": bindparam("type", type_=table.c.type.type), "created_at": at,
            "state": literal("pending"), "attempts": literal(0), "next_attempt_at": at}


def _pg_insert() -> Any:
    """One round trip: the id is taken from the table's sequence inside the INSERT, so the body that
    names it is written with the row, and the writing transaction's id with it (for the feed)."""
    new_id = select(func.nextval(func.pg_get_serial_sequence("shop_events", "id")).label("id")).subquery()
    columns = _insert_columns()
    columns["body"] = bindparam("head", type_=Text) + cast(new_id.c.id, Text) + bindparam("tail", type_=Text)
    columns["txid"] = _PG_TXID
    return (insert(_TABLE)
            .from_select(["id", *columns], select(new_id.c.id, *columns.values()))
            .returning(_TABLE.c.id))


_PG_INSERT = prebuilt(_pg_insert())
_SQLITE_INSERT = (insert(_TABLE).values(body="", **_insert_columns())
                  .returning(_TABLE.c.id))
_SQLITE_BODY = (update(_TABLE).where(_TABLE.c.id == bindparam("event_id"))
                .values(body=bindparam("head", type_=Text) + cast(bindparam("event_id"), Text)
                        + bindparam("tail", type_=Text)))


# -- after commit: hand the new events to the delivery task ---------------------------------------


def set_publisher(publisher: Publisher | None) -> None:
    """The process's way to start a delivery (None: nothing is sent; the sweep relays)."""
    global _publisher
    _publisher = publisher


@event.listens_for(Session, "after_commit")
def _publish_committed(session: Session) -> None:
    ids = session.info.pop(_NEW_EVENTS, None)
    publisher = _publisher
    if not ids or publisher is None:
        return
    for event_id in ids:
        try:
            publisher(event_id)
        except Exception as exc:  # the row is committed: the sweep relays what was not sent
            log.warning("event %s: could not start its delivery (%s); the sweep will relay it",
                        event_name(event_id), type(exc).__name__, extra={"event_id": event_id})


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back(session: Session) -> None:
    session.info.pop(_NEW_EVENTS, None)


# -- the pull feed ----------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Cursor:
    """A reader's position: (transaction id, event id) of the last event it has; opaque to the shop."""

    txid: int = 0
    event_id: int = 0

    def __str__(self) -> str:
        return f"{self.txid}.{self.event_id}"

    @classmethod
    def parse(cls, value: str | None) -> Cursor:
        """'' or None: the beginning. Raises ValueError for anything but a cursor this feed gave out."""
        if not value:
            return cls()
        match = _CURSOR.match(value)
        if not match:
            raise ValueError("after must be a cursor returned as `next` (or empty for the beginning)")
        return cls(int(match.group(1)), int(match.group(2)))


def feed_page(session: Session, after: Cursor, limit: int) -> tuple[list[ShopEvent], Cursor]:
    """Up to `limit` events after `after`, oldest commit first, and the cursor to continue from."""
    if not 1 <= limit <= MAX_FEED_LIMIT:
        raise ValueError(f"limit must be 1 to {MAX_FEED_LIMIT}")
    if _is_postgres(session):
        stmt = (
            select(ShopEvent)
            .where(tuple_(ShopEvent.txid, ShopEvent.id) > tuple_(after.txid, after.event_id),
                   ShopEvent.txid < _PG_HORIZON)
            .order_by(ShopEvent.txid, ShopEvent.id)
        )
    else:
        stmt = select(ShopEvent).where(ShopEvent.id > after.event_id).order_by(ShopEvent.id)
    rows = list(session.scalars(stmt.limit(limit)))
    if not rows:
        return rows, after
    last = rows[-1]
    return rows, Cursor(last.txid or 0, last.id)


def event_json(row: ShopEvent) -> dict[str, Any]:
    """The stored body as an object (the same bytes the pushes carry)."""
    return dict(json.loads(row.body))


# -- operations -------------------------------------------------------------------------------------


def reopen(session: Session, event_ids: list[int], *, now: datetime) -> list[int]:
    """Make events due for delivery again now, delivered or failed alike (an operator's redelivery);
    the ids that exist. The caller enqueues them after its commit (or the sweep relays them)."""
    if not event_ids:
        return []
    session.execute(
        update(ShopEvent)
        .where(ShopEvent.id.in_(event_ids))
        .values(state="pending", next_attempt_at=now, delivered_at=None)
        .execution_options(synchronize_session=False)
    )
    stmt = select(ShopEvent.id).where(ShopEvent.id.in_(event_ids)).order_by(ShopEvent.id)
    return list(session.scalars(stmt))
