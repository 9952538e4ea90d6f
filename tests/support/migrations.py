"""Migration 0006 on an existing single-shop database, the same check on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import NullPool

PROJECT = Path(__file__).resolve().parents[2]
_ORDER = ("INSERT INTO orders (shop_no, order_no, amount, currency, pay_type, product_name, status, "
          "check_attempts, created_at, updated_at) VALUES (:shop, :no, 50000, 'TWD', 'A', 'x', 'pending', 0, "
          "'2026-11-25 02:00:00+00', '2026-11-25 02:00:00+00')")
_EVENT = ("INSERT INTO order_events (order_no, from_status, to_status, source, at) "
          "VALUES (:no, NULL, 'pending', 'api', '2026-11-25 02:00:00+00')")


def check_single_shop_upgrade(url: str) -> None:
    """A database just before 0006 with one shop's orders and events upgrades with every row kept and
    its events given the order's shop; afterwards a second shop may reuse an OrderNo, the same shop may
    not."""
    cfg = Config(str(PROJECT / "alembic.ini"))
    before = ScriptDirectory.from_config(cfg).get_revision("0006").down_revision  # just before 0006
    command.upgrade(cfg, str(before))
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            for no in ("A1", "A2"):
                conn.execute(text(_ORDER), {"shop": "NA0001_001", "no": no})
                conn.execute(text(_EVENT), {"no": no})
        command.upgrade(cfg, "head")
        with engine.begin() as conn:
            events = conn.execute(text("SELECT order_no, shop_no FROM order_events ORDER BY order_no")).all()
            assert [tuple(e) for e in events] == [("A1", "NA0001_001"), ("A2", "NA0001_001")]
            conn.execute(text(_ORDER), {"shop": "NA0001_002", "no": "A1"})
        try:
            with engine.begin() as conn:
                conn.execute(text(_ORDER), {"shop": "NA0001_002", "no": "A1"})
        except IntegrityError:
            pass
        else:
            raise AssertionError("an OrderNo twice in one shop was accepted")
        with engine.begin() as conn:
            assert conn.execute(text("SELECT count(*) FROM orders")).scalar() == 3
    finally:
        engine.dispose()
