"""Migrations on SQLite: from empty to head and back, WAL on, and the result equals the models."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from core.db import make_engine
from core.models import Base
from tests.support.migrations import check_single_shop_upgrade

PROJECT = Path(__file__).resolve().parents[3]


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'var' / 'migrated.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    return url


def _config() -> Config:
    return Config(str(PROJECT / "alembic.ini"))


def test_upgrade_creates_the_database_file_in_wal_mode_matching_the_models(db_url: str) -> None:
    command.upgrade(_config(), "head")

    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            assert set(inspect(conn).get_table_names()) >= {
                "orders", "pay_tokens", "bank_calls", "order_events", "sweep_runs"
            }
    finally:
        engine.dispose()
    assert diff == []


def test_downgrade_to_base_and_upgrade_again(db_url: str) -> None:
    command.upgrade(_config(), "head")
    command.downgrade(_config(), "base")

    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert inspect(conn).get_table_names() == ["alembic_version"]
        command.upgrade(_config(), "head")
        with engine.connect() as conn:
            assert "orders" in inspect(conn).get_table_names()
    finally:
        engine.dispose()


def test_a_single_shop_database_upgrades_to_several_shops(db_url: str) -> None:
    check_single_shop_upgrade(db_url)
