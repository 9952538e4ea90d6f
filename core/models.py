"""SQLAlchemy 2.0 typed models: the schema every process shares (docs/pipeline.md, Tables).

Times are timezone-aware UTC (`UTCDateTime` stores them naive-UTC on SQLite and as timestamptz on
PostgreSQL). Amounts are integers ×100, as the bank counts. Migrations live in migrations/.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    and_,
    bindparam,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.elements import ColumnElement

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def partial_index(name: str, column: str, *, where: str) -> Index:
    """The same partial index on PostgreSQL and SQLite: its size follows the rows `where` selects."""
    return Index(name, column, postgresql_where=text(where), sqlite_where=text(where))


# BigInteger ids are plain INTEGER on SQLite so that they autoincrement there.
Id = BigInteger().with_variant(Integer(), "sqlite")


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    shop_no: Mapped[str] = mapped_column(String(20))
    order_no: Mapped[str] = mapped_column(String(50))  # unique per shop (uq_orders_shop_order)
    amount: Mapped[int] = mapped_column(BigInteger)  # ×100
    currency: Mapped[str] = mapped_column(String(3), default="TWD")
    pay_type: Mapped[str] = mapped_column(String(1))  # A | C
    product_name: Mapped[str] = mapped_column(String(60))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    status_reason: Mapped[str | None] = mapped_column(Text)
    ts_no: Mapped[str | None] = mapped_column(String(32), unique=True)
    pay_token: Mapped[str | None] = mapped_column(String(128))
    atm_pay_no: Mapped[str | None] = mapped_column(String(32))
    card_pay_url: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    check_attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        # The targeted sweep: pending orders due for a check, cheapest first. Partial on both
        # backends, so its size follows the pending work, not the table.
        partial_index("ix_orders_due_check", "next_check_at", where="status = 'pending'"),
        Index("ix_orders_status", "status"),
        # An OrderNo is unique within its shop: two shops of one merchant may use the same numbers.
        UniqueConstraint("shop_no", "order_no", name="uq_orders_shop_order"),
    )

    @staticmethod
    def key(order_no: str, shop_no: str | None = None) -> ColumnElement[bool]:
        """The WHERE clause naming one order; without a shop, the OrderNo alone (single-shop callers)."""
        clause = Order.order_no == order_no
        return clause if shop_no is None else and_(Order.shop_no == shop_no, clause)

    @staticmethod
    def bound_key(with_shop: bool) -> ColumnElement[bool]:
        """`key` on the table's columns with bind parameters `k_order_no` (and `k_shop_no`), for
        statements built once (a prebuilt statement's cache key is memoized: the settlement path)."""
        columns = Order.__table__.c
        clause = columns.order_no == bindparam("k_order_no")
        return and_(columns.shop_no == bindparam("k_shop_no"), clause) if with_shop else clause


class PayToken(Base):
    """The callback log and the outbox: one row per PayToken the bank or a browser presented."""

    __tablename__ = "pay_tokens"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    shop_no: Mapped[str] = mapped_column(String(20))
    pay_token: Mapped[str] = mapped_column(String(128), unique=True)
    source: Mapped[str] = mapped_column(String(16))  # first source: backend | return | sweep | operator
    receipts: Mapped[int] = mapped_column(Integer, default=1)
    first_received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    state: Mapped[str] = mapped_column(String(16), default="received")  # core.states.TokenState
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    order_no: Mapped[str | None] = mapped_column(String(50), index=True)

    __table_args__ = (
        # The outbox relay: unresolved tokens by age. Partial, so resolved history costs nothing:
        # a range scan on last_received_at touches only tokens still waiting for resolution.
        partial_index("ix_pay_tokens_unresolved", "last_received_at", where="state = 'received'"),
        # Tokens whose bank reply failed verification, for the operator (`orders stuck`): partial, so
        # listing them costs what is parked, not the size of the callback log.
        partial_index("ix_pay_tokens_untrusted", "first_received_at", where="state = 'untrusted'"),
        # Tokens that failed every allowed resolution (RESOLVE_MAX_ATTEMPTS), likewise for operators.
        partial_index("ix_pay_tokens_dead", "first_received_at", where="state = 'dead'"),
        # The oldest unresolved token, for the metrics (core/services/figures.py): one index step.
        partial_index("ix_pay_tokens_received_first", "first_received_at", where="state = 'received'"),
    )


class BankCall(Base):
    __tablename__ = "bank_calls"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    api_service: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(128), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    duration_ms: Mapped[int] = mapped_column(Integer)
    http_status: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(32))  # ok | rejected | transport_error | protocol_error
    error: Mapped[str | None] = mapped_column(Text)
    shop_no: Mapped[str | None] = mapped_column(String(20))  # NULL: recorded before several shops
    key_set: Mapped[str | None] = mapped_column(String(8))  # the set that verified the reply: active | next


class OrderEvent(Base):
    """Append-only history of order changes; the unique key makes a double transition impossible."""

    __tablename__ = "order_events"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    shop_no: Mapped[str] = mapped_column(String(20))
    order_no: Mapped[str] = mapped_column(String(50), index=True)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))
    ts_no: Mapped[str | None] = mapped_column(String(32))
    amount: Mapped[int | None] = mapped_column(BigInteger)
    detail: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("shop_no", "order_no", "from_status", "to_status", name="uq_order_events_move"),
    )


class SweepRun(Base):
    """One reconciliation pass and its counts; the last bulk window end is the next one's start."""

    __tablename__ = "sweep_runs"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    shop_no: Mapped[str | None] = mapped_column(String(20))  # NULL: a pass from before several shops
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    window_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    requeued: Mapped[int] = mapped_column(Integer, default=0)
    found: Mapped[int] = mapped_column(Integer, default=0)
    settled: Mapped[int] = mapped_column(Integer, default=0)
    expired: Mapped[int] = mapped_column(Integer, default=0)
    still_pending: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    events_relayed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    detail: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        # The last pass without errors (the metrics' qpay_sweep_last_success_timestamp_seconds).
        partial_index("ix_sweep_runs_clean", "finished_at", where="errors = 0"),
    )


class ShopEvent(Base):
    """The notification outbox: one row per order change, written in the change's own transaction.

    `body` is the JSON every delivery and the pull feed send, fixed at write time. `txid` is the writing
    transaction's id on PostgreSQL (pg_current_xact_id()), which orders the pull feed by commit
    (core/services/events.py); NULL on SQLite, where writers are serialized and ids follow commits.
    Delivery state: pending (to push) -> delivered | failed; `next_attempt_at` is when the next push is
    due (a claimed attempt pushes it past its own timeout, so a dead worker's claim runs out).
    """

    __tablename__ = "shop_events"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    order_no: Mapped[str] = mapped_column(String(50), index=True)
    type: Mapped[str] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    txid: Mapped[int | None] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        # The pull feed: commit order (txid), then id.
        Index("ix_shop_events_feed", "txid", "id"),
        # The outbox relay: undelivered events by due time. Partial, so delivered history costs nothing.
        partial_index("ix_shop_events_pending", "next_attempt_at", where="state = 'pending'"),
    )


class DeliveryAttempt(Base):
    """One POST of one event to the shop: when, how long, and the HTTP status or the error."""

    __tablename__ = "shop_event_attempts"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(BigInteger, index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    duration_ms: Mapped[int] = mapped_column(Integer)
    http_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
