"""Initial schema: orders, pay_tokens, bank_calls, order_events, sweep_runs.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Self-contained on purpose (no import of core.models), so later model changes never rewrite history.
Times are `timestamptz` on PostgreSQL and naive-UTC text on SQLite (core.models.UTCDateTime).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
PENDING = sa.text("status = 'pending'")
RECEIVED = sa.text("state = 'received'")


def _id() -> sa.Column[int]:
    return sa.Column("id", ID, autoincrement=True, nullable=False)


def upgrade() -> None:
    op.create_table(
        "bank_calls",
        _id(),
        sa.Column("api_service", sa.String(32), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_bank_calls"),
    )
    op.create_index("ix_bank_calls_key", "bank_calls", ["key"])

    op.create_table(
        "order_events",
        _id(),
        sa.Column("order_no", sa.String(50), nullable=False),
        sa.Column("from_status", sa.String(16), nullable=True),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("ts_no", sa.String(32), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_order_events"),
        sa.UniqueConstraint("order_no", "from_status", "to_status", name="uq_order_events_move"),
    )
    op.create_index("ix_order_events_order_no", "order_events", ["order_no"])

    op.create_table(
        "orders",
        _id(),
        sa.Column("shop_no", sa.String(20), nullable=False),
        sa.Column("order_no", sa.String(50), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("pay_type", sa.String(1), nullable=False),
        sa.Column("product_name", sa.String(60), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("ts_no", sa.String(32), nullable=True),
        sa.Column("pay_token", sa.String(128), nullable=True),
        sa.Column("atm_pay_no", sa.String(32), nullable=True),
        sa.Column("card_pay_url", sa.Text(), nullable=True),
        sa.Column("expires_at", TS, nullable=True),
        sa.Column("paid_at", TS, nullable=True),
        sa.Column("next_check_at", TS, nullable=True),
        sa.Column("check_attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_orders"),
        sa.UniqueConstraint("order_no", name="uq_orders_order_no"),
        sa.UniqueConstraint("ts_no", name="uq_orders_ts_no"),
    )
    op.create_index(
        "ix_orders_due_check", "orders", ["next_check_at"], postgresql_where=PENDING, sqlite_where=PENDING
    )
    op.create_index("ix_orders_status", "orders", ["status"])

    op.create_table(
        "pay_tokens",
        _id(),
        sa.Column("shop_no", sa.String(20), nullable=False),
        sa.Column("pay_token", sa.String(128), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("receipts", sa.Integer(), nullable=False),
        sa.Column("first_received_at", TS, nullable=False),
        sa.Column("last_received_at", TS, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_enqueued_at", TS, nullable=True),
        sa.Column("resolved_at", TS, nullable=True),
        sa.Column("order_no", sa.String(50), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_pay_tokens"),
        sa.UniqueConstraint("pay_token", name="uq_pay_tokens_pay_token"),
    )
    op.create_index("ix_pay_tokens_order_no", "pay_tokens", ["order_no"])
    op.create_index(
        "ix_pay_tokens_unresolved",
        "pay_tokens",
        ["last_received_at"],
        postgresql_where=RECEIVED,
        sqlite_where=RECEIVED,
    )

    op.create_table(
        "sweep_runs",
        _id(),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("window_start", TS, nullable=True),
        sa.Column("window_end", TS, nullable=True),
        sa.Column("requeued", sa.Integer(), nullable=False),
        sa.Column("found", sa.Integer(), nullable=False),
        sa.Column("settled", sa.Integer(), nullable=False),
        sa.Column("expired", sa.Integer(), nullable=False),
        sa.Column("still_pending", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_sweep_runs"),
    )


def downgrade() -> None:
    op.drop_table("sweep_runs")
    op.drop_index("ix_pay_tokens_unresolved", table_name="pay_tokens")
    op.drop_index("ix_pay_tokens_order_no", table_name="pay_tokens")
    op.drop_table("pay_tokens")
    op.drop_index("ix_orders_status", table_name="orders")
    op.drop_index("ix_orders_due_check", table_name="orders")
    op.drop_table("orders")
    op.drop_index("ix_order_events_order_no", table_name="order_events")
    op.drop_table("order_events")
    op.drop_index("ix_bank_calls_key", table_name="bank_calls")
    op.drop_table("bank_calls")
