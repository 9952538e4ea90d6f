"""`db upgrade`: the Alembic migrations, as the Procfile's release step runs them."""

from __future__ import annotations

from pathlib import Path

import click
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from flask.cli import AppGroup

from core import db
from webhook.cli.common import fail, settings

PROJECT_DIR = Path(__file__).resolve().parent.parent.parent

db_cli = AppGroup("db", help="The database schema.")


@db_cli.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply the Alembic migrations (what the Procfile's release step runs)."""
    cfg = Config(str(PROJECT_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(PROJECT_DIR / "migrations"))
    engine = db.make_engine(settings().database_url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            current = MigrationContext.configure(conn).get_current_revision()
    except Exception as exc:
        fail(f"migration failed: {type(exc).__name__}: {exc}")
    finally:
        engine.dispose()
    click.echo(f"database schema at revision {current} ({engine.dialect.name})")
