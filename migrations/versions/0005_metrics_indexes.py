"""Metrics: partial indexes so a scrape's figures cost what is pending, not the size of the tables.

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-29

- ix_pay_tokens_received_first: the oldest unresolved token (min first_received_at of the received
  ones) in one index step; ix_pay_tokens_unresolved is ordered by last_received_at instead.
- ix_sweep_runs_clean: the last sweep pass without errors (max finished_at), for the sweep alert.
Self-contained like 0001 (no import of core.models); PostgreSQL and SQLite both support partial indexes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RECEIVED = sa.text("state = 'received'")
CLEAN = sa.text("errors = 0")


def upgrade() -> None:
    op.create_index("ix_pay_tokens_received_first", "pay_tokens", ["first_received_at"],
                    postgresql_where=RECEIVED, sqlite_where=RECEIVED)
    op.create_index("ix_sweep_runs_clean", "sweep_runs", ["finished_at"],
                    postgresql_where=CLEAN, sqlite_where=CLEAN)


def downgrade() -> None:
    op.drop_index("ix_sweep_runs_clean", table_name="sweep_runs")
    op.drop_index("ix_pay_tokens_received_first", table_name="pay_tokens")
