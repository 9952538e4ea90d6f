"""Alembic reads DATABASE_URL exactly as the services do: Heroku's postgres:// works for the release step."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config

PROJECT = Path(__file__).resolve().parents[3]


def test_offline_migrations_accept_a_heroku_postgres_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # given the URL Heroku sets (SQLAlchemy 2 has no dialect named "postgres")
    monkeypatch.setenv("DATABASE_URL", "postgres://u:pw-31337@db.example:5432/qpay")

    # when the migrations render their SQL (offline: no connection is made)
    command.upgrade(Config(str(PROJECT / "alembic.ini")), "head", sql=True)

    # then they render PostgreSQL DDL, and the password is nowhere in the output
    out = capsys.readouterr()
    assert "CREATE TABLE orders" in out.out
    assert "TIMESTAMP WITH TIME ZONE" in out.out  # the PostgreSQL dialect, not SQLite's
    assert "pw-31337" not in out.out + out.err
