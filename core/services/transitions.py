"""Order transitions: one conditional UPDATE each, so racing writers make one change and one event.

Every change is one conditional UPDATE (`... WHERE status = <current>`) whose row count says whether
this call made it, plus one OrderEvent and the shop's ShopEvent (the notification outbox). Two
settlers racing on one order (a callback and a sweep, or twenty workers) therefore produce exactly one
transition and one event; the losers see a no-op. The settlement rules that choose the target live in
core/services/settlement.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import NamedTuple, cast

from sqlalchemy import Select, Table, Update, bindparam, insert, select, update
from sqlalchemy.orm import Session

from core.driver import prebuilt
from core.models import Order, OrderEvent
from core.services.due import next_check_at
from core.services.events import record_event
from core.services.order_json import DETAIL_COLUMNS, OrderSnapshot
from core.services.updates import bound_values, rows_updated, run, value_params
from core.settings import Settings
from core.states import OrderStatus, Source, check_move

_MAX_TRIES = 3
# Statements built once, with bind parameters: SQLAlchemy memoizes a statement object's cache key, so
# a settlement pays neither the construction nor the key of its statements (issue 17: a tenth of a
# worker's CPU per settlement went to building them).
_ORDERS = cast(Table, Order.__table__)
_INSERT_EVENT = prebuilt(insert(cast(Table, OrderEvent.__table__)))
_READ_STATE = {with_shop: prebuilt(select(_ORDERS.c.status, _ORDERS.c.ts_no, _ORDERS.c.shop_no)
                                   .where(Order.bound_key(with_shop))) for with_shop in (False, True)}


class Stored(NamedTuple):
    """What a move is judged from: the order's status, TSNo and shop as its row holds them."""

    status: str
    ts_no: str | None
    shop_no: str


@cache
def _move_statement(names: tuple[str, ...]) -> Update:
    """The conditional UPDATE setting `names`, returning the order as it then stands."""
    return prebuilt(update(_ORDERS).where(Order.bound_key(True), _ORDERS.c.status == bindparam("k_status"))
                    .values(bound_values(names))
                    .returning(*DETAIL_COLUMNS))


class OrderNotFound(LookupError):
    """transition() was asked to move an order that does not exist."""

    def __init__(self, order_no: str) -> None:
        super().__init__(f"order {order_no} does not exist")
        self.order_no = order_no


@dataclass(frozen=True, slots=True)
class _Move:
    """One requested transition and what it records."""

    target: OrderStatus
    source: Source
    at: datetime
    ts_no: str | None
    amount: int | None
    detail: str | None
    pay_token: str | None
    paid_at: datetime | None


def transition(
    session: Session,
    order_no: str,
    target: OrderStatus | str,
    *,
    source: Source | str,
    ts_no: str | None = None,
    amount: int | None = None,
    detail: str | None = None,
    pay_token: str | None = None,
    paid_at: datetime | None = None,
    now: datetime | None = None,
    shop_no: str | None = None,
    stored: Stored | None = None,
) -> bool:
    """Move an order to `target`; True only if this call made the change.

    `shop_no` names the order's shop (OrderNos are unique per shop); None: the OrderNo alone.
    `stored`: the order's row as the caller read it in this transaction (saves the first SELECT; a
    stale one costs only a lost UPDATE and a re-read).

    Repeating the current state is a no-op (False); an illegal move raises IllegalTransition. If a
    concurrent writer changes the status between our read and our UPDATE, the UPDATE matches no row
    and we re-read: the same target is a no-op, anything else is judged again from the new state.
    """
    move = _Move(OrderStatus(target), Source(source), now if now is not None else datetime.now(UTC),
                 ts_no, amount, detail, pay_token, paid_at)
    for _ in range(_MAX_TRIES):
        row = stored or _read_state(session, order_no, shop_no)
        stored = None
        current = OrderStatus(row.status)
        if not check_move(order_no, current, move.target, move.source):
            return False
        if _moved(session, order_no, row.shop_no, row.ts_no, current, move):
            return True
    raise RuntimeError(f"order {order_no}: status kept changing under us ({_MAX_TRIES} tries)")


def _read_state(session: Session, order_no: str, shop_no: str | None) -> Stored:
    statement: Select[tuple[str, str | None, str]] = _READ_STATE[shop_no is not None]
    row = run(session, statement, {"k_order_no": order_no, "k_shop_no": shop_no}).first()
    if row is None:
        raise OrderNotFound(order_no)
    return Stored(row.status, row.ts_no, row.shop_no)


def _moved(
    session: Session, order_no: str, shop_no: str, stored_ts_no: str | None, current: OrderStatus, move: _Move
) -> bool:
    """The conditional UPDATE and, if it won, the order's event and the shop's; False if it lost."""
    values: dict[str, object] = {"status": move.target.value, "status_reason": move.detail,
                                 "updated_at": move.at}
    if move.target is OrderStatus.PAID:
        values["paid_at"] = move.paid_at or move.at
        if move.ts_no and stored_ts_no is None:
            values["ts_no"] = move.ts_no
        if move.pay_token:
            values["pay_token"] = move.pay_token
    if move.target is not OrderStatus.PENDING:
        values["next_check_at"] = None
    # Core on the session's connection: the ORM's DML paths cost ~9% of a worker's CPU per
    # settlement for these two statements (issue 17).
    keys = {"k_order_no": order_no, "k_shop_no": shop_no, "k_status": current.value}
    moved = run(session, _move_statement(tuple(values)), {**value_params(values), **keys}).first()
    if moved is None:
        return False
    run(session, _INSERT_EVENT, {
        "shop_no": shop_no, "order_no": order_no, "from_status": current.value,
        "to_status": move.target.value, "source": move.source.value, "ts_no": move.ts_no,
        "amount": move.amount, "detail": move.detail, "at": move.at,
    })
    expire_cached(session, order_no, shop_no)
    # The shop's notification, in this same transaction (core/services/events.py).
    record_event(session, OrderSnapshot.of(moved), current.value, move.target.value, move.source.value,
                 move.at)
    return True


def expire_cached(session: Session, order_no: str, shop_no: str | None = None) -> None:
    """Bulk UPDATEs bypass the identity map: make a loaded Order re-read its row."""
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Order) and obj.order_no == order_no and shop_no in (None, obj.shop_no):
            session.expire(obj)


def schedule_next_check(
    session: Session,
    settings: Settings,
    order_no: str,
    *,
    now: datetime,
    not_after: datetime | None = None,
    shop_no: str | None = None,
    attempts: int | None = None,
) -> bool:
    """Push a still-pending order's next check out along settings.check_schedule (attempts += 1).

    `not_after` caps it: an unpaid order is looked at again when it may expire, not a backoff step
    (up to hours) later. `attempts`: the order's check_attempts when the caller has just read it in
    this transaction (saves a SELECT; the UPDATE still counts in SQL and only a pending order moves).
    """
    still_pending = (Order.key(order_no, shop_no), Order.status == OrderStatus.PENDING.value)
    if attempts is None:
        attempts = session.scalar(select(Order.check_attempts).where(*still_pending))
        if attempts is None:
            return False
    when = next_check_at(attempts + 1, now, settings.check_schedule)
    if not_after is not None and now < not_after < when:
        when = not_after
    changed = rows_updated(session, update(Order).where(*still_pending).values(
        check_attempts=Order.check_attempts + 1, next_check_at=when, updated_at=now,
    ))
    expire_cached(session, order_no, shop_no)
    return bool(changed)
