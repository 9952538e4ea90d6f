"""Shop notifications: the event outbox (shop_events) and its delivery attempts (shop_event_attempts).

Revision ID: 0003
Revises: 0004
Create Date: 2026-11-29

Self-contained like 0001 (no import of core.models). Works on PostgreSQL and SQLite (partial indexes
on both). Existing orders get no events: notifications start with the first change after the upgrade.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
PENDING = sa.text("state = 'pending'")


def upgrade() -> None:
    op.create_table(
        "shop_events",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("order_no", sa.String(50), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("txid", sa.BigInteger(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS, nullable=True),
        sa.Column("last_enqueued_at", TS, nullable=True),
        sa.Column("delivered_at", TS, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_shop_events"),
    )
    op.create_index("ix_shop_events_order_no", "shop_events", ["order_no"])
    op.create_index("ix_shop_events_feed", "shop_events", ["txid", "id"])
    op.create_index("ix_shop_events_pending", "shop_events", ["next_attempt_at"],
                    postgresql_where=PENDING, sqlite_where=PENDING)
    op.create_table(
        "shop_event_attempts",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_shop_event_attempts"),
    )
    op.create_index("ix_shop_event_attempts_event_id", "shop_event_attempts", ["event_id"])
    # A plain ADD COLUMN on both backends (a batch copy of the table on SQLite could drop the WHERE of
    # its partial index).
    op.add_column("sweep_runs", sa.Column("events_relayed", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("sweep_runs", "events_relayed")  # SQLite 3.35+ drops a column in place
    op.drop_index("ix_shop_event_attempts_event_id", table_name="shop_event_attempts")
    op.drop_table("shop_event_attempts")
    op.drop_index("ix_shop_events_pending", table_name="shop_events")
    op.drop_index("ix_shop_events_feed", table_name="shop_events")
    op.drop_index("ix_shop_events_order_no", table_name="shop_events")
    op.drop_table("shop_events")
