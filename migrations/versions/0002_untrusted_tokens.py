"""Untrusted pay tokens: a partial index for the tokens whose bank reply failed verification.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

pay_tokens.state is a plain String(16) with no CHECK constraint, so the new state `untrusted`
(core.states.TokenState) needs no column change; this only adds the index `orders stuck` reads.
Self-contained like 0001 (no import of core.models). Works on PostgreSQL and SQLite (both support
partial indexes).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNTRUSTED = sa.text("state = 'untrusted'")


def upgrade() -> None:
    op.create_index(
        "ix_pay_tokens_untrusted",
        "pay_tokens",
        ["first_received_at"],
        postgresql_where=UNTRUSTED,
        sqlite_where=UNTRUSTED,
    )


def downgrade() -> None:
    op.drop_index("ix_pay_tokens_untrusted", table_name="pay_tokens")
