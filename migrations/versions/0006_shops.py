"""Several shops: orders unique per (shop_no, order_no); the shop on events, bank calls and sweep runs.

Revision ID: 0006
Revises: 0003
Create Date: 2026-11-29

An existing single-shop database keeps every row: order_events.shop_no is filled from the order it
belongs to; bank_calls and sweep_runs get a nullable shop_no (NULL = recorded before several shops;
the sweep reads a NULL window as every shop's) and bank_calls.key_set (the key set that verified the
reply). Self-contained (no import of core.models); batch mode so SQLite rebuilds its tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_constraint("uq_orders_order_no", type_="unique")
        batch.create_unique_constraint("uq_orders_shop_order", ["shop_no", "order_no"])

    op.add_column("order_events", sa.Column("shop_no", sa.String(20), nullable=True))
    op.execute(
        "UPDATE order_events SET shop_no = COALESCE((SELECT orders.shop_no FROM orders "
        "WHERE orders.order_no = order_events.order_no), '')"
    )
    with op.batch_alter_table("order_events") as batch:
        batch.alter_column("shop_no", existing_type=sa.String(20), nullable=False)
        batch.drop_constraint("uq_order_events_move", type_="unique")
        batch.create_unique_constraint(
            "uq_order_events_move", ["shop_no", "order_no", "from_status", "to_status"]
        )

    op.add_column("bank_calls", sa.Column("shop_no", sa.String(20), nullable=True))
    op.add_column("bank_calls", sa.Column("key_set", sa.String(8), nullable=True))
    op.add_column("sweep_runs", sa.Column("shop_no", sa.String(20), nullable=True))


def downgrade() -> None:
    # Refused by the database (the unique constraint) if two shops now share an OrderNo: by design.
    op.drop_column("sweep_runs", "shop_no")
    with op.batch_alter_table("bank_calls") as batch:
        batch.drop_column("key_set")
        batch.drop_column("shop_no")
    with op.batch_alter_table("order_events") as batch:
        batch.drop_constraint("uq_order_events_move", type_="unique")
        batch.create_unique_constraint("uq_order_events_move", ["order_no", "from_status", "to_status"])
        batch.drop_column("shop_no")
    with op.batch_alter_table("orders") as batch:
        batch.drop_constraint("uq_orders_shop_order", type_="unique")
        batch.create_unique_constraint("uq_orders_order_no", ["order_no"])
