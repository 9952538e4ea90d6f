"""Dead pay tokens: a partial index for the tokens that failed RESOLVE_MAX_ATTEMPTS resolutions.

Revision ID: 0004
Revises: 0005
Create Date: 2026-11-29

pay_tokens.state is a plain String(16) with no CHECK constraint, so the new state `dead`
(core.states.TokenState) needs no column change; this only adds the index `orders stuck` and
`tokens replay --dead` read. Self-contained (no import of core.models). Works on PostgreSQL and
SQLite (both support partial indexes).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEAD = sa.text("state = 'dead'")


def upgrade() -> None:
    op.create_index(
        "ix_pay_tokens_dead",
        "pay_tokens",
        ["first_received_at"],
        postgresql_where=DEAD,
        sqlite_where=DEAD,
    )


def downgrade() -> None:
    op.drop_index("ix_pay_tokens_dead", table_name="pay_tokens")
