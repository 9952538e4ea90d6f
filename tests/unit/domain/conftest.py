"""Fixtures for the domain unit tests: a migrated-equivalent SQLite file, settings, a fake bank."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.db import make_engine
from core.models import Base, Order
from core.services.orders import NewOrder, create_order
from core.settings import Settings, load_settings
from tests.support.fakes import FakeBankClient

# 10:00 in Taipei on 2026-11-25.
NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)


@pytest.fixture
def settings() -> Settings:
    return load_settings({"PUBLIC_BASE_URL": "https://shop.example", "CHECK_SCHEDULE": "60,300,900"})


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'domain.db'}")
    Base.metadata.create_all(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def maker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@pytest.fixture
def session(maker: sessionmaker[Session]) -> Iterator[Session]:
    with maker() as s:
        yield s


@pytest.fixture
def bank() -> FakeBankClient:
    return FakeBankClient()


@pytest.fixture
def new_order(session: Session, bank: FakeBankClient, settings: Settings) -> Callable[..., Order]:
    """Create a pending order through the real service (fake bank); returns the stored row."""

    def make(amount_twd: int = 500, pay_type: str = "A", order_no: str = "A001", **kw: object) -> Order:
        new = NewOrder(amount_twd=amount_twd, pay_type=pay_type, product_name="測試商品", order_no=order_no,
                       **kw)  # type: ignore[arg-type]
        order = create_order(session, bank, settings, new, now=NOW)
        session.flush()
        return order

    return make
