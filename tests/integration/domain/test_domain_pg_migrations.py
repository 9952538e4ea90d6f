"""Migrations on real PostgreSQL: upgrade from empty, downgrade to base, upgrade again; no model drift."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool

from core.models import Base
from tests.support import services
from tests.support.migrations import check_single_shop_upgrade

pytestmark = pytest.mark.integration

PROJECT = Path(__file__).resolve().parents[3]
TABLES = {"orders", "pay_tokens", "bank_calls", "order_events", "sweep_runs"}


@pytest.fixture
def empty_pg(postgres_admin_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = services.create_database(postgres_admin_url, migrated=False)
    monkeypatch.setenv("DATABASE_URL", url)
    yield url
    services.drop_database(url)


def _tables(url: str) -> set[str]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_on_an_empty_database(empty_pg: str) -> None:
    cfg = Config(str(PROJECT / "alembic.ini"))

    command.upgrade(cfg, "head")
    assert _tables(empty_pg) >= TABLES
    command.downgrade(cfg, "base")
    assert _tables(empty_pg) == {"alembic_version"}
    command.upgrade(cfg, "head")
    assert _tables(empty_pg) >= TABLES


def test_the_migrated_schema_equals_the_models(empty_pg: str) -> None:
    command.upgrade(Config(str(PROJECT / "alembic.ini")), "head")

    engine = create_engine(empty_pg, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, Base.metadata)
            partial = conn.execute(text(
                "SELECT indexname, indexdef FROM pg_indexes WHERE indexname IN "
                "('ix_orders_due_check', 'ix_pay_tokens_unresolved', 'ix_pay_tokens_untrusted') "
                "ORDER BY indexname"
            )).all()
    finally:
        engine.dispose()
    assert diff == []
    assert [name for name, _ in partial] == [
        "ix_orders_due_check", "ix_pay_tokens_unresolved", "ix_pay_tokens_untrusted"
    ]
    assert all(" WHERE " in definition for _, definition in partial)


def test_a_single_shop_database_upgrades_to_several_shops(empty_pg: str) -> None:
    check_single_shop_upgrade(empty_pg)
