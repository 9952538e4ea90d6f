"""Fixtures for the ops tests: a migrated SQLite file per test, the real app with a fake bank and broker."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner

from core.db import dispose_engines, transaction
from core.models import Order
from core.services.orders import NewOrder, create_order
from core.settings import Settings, load_settings
from tests.support import services
from tests.support.fakes import FakeBankClient
from webhook import create_app


@dataclass
class FakeEnqueuer:
    """The broker as the CLI sees it: records what was sent; `up` False plays an outage."""

    up: bool = True
    sent: list[int] = field(default_factory=list)
    events: list[int] = field(default_factory=list)

    def send_resolve(self, token_id: int) -> bool:
        if not self.up:
            return False
        self.sent.append(token_id)
        return True

    def send_event(self, event_id: int) -> bool:
        if not self.up:
            return False
        self.events.append(event_id)
        return True

    def ping(self) -> None:
        if not self.up:
            raise ConnectionError("broker down")


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file migrated with Alembic (as operators do), copied for each test."""
    path = tmp_path_factory.mktemp("ops-template") / "template.db"
    services.migrate(f"sqlite:///{path}")
    return path


@pytest.fixture
def db_url(tmp_path: Path, migrated_template: Path) -> str:
    target = tmp_path / "ops.db"
    shutil.copy(migrated_template, target)
    yield f"sqlite:///{target}"
    dispose_engines()


@pytest.fixture
def settings(db_url: str) -> Settings:
    return load_settings({"DATABASE_URL": db_url, "REDIS_URL": "redis://127.0.0.1:1/0",
                          "CHECK_SCHEDULE": "60,300,900", "SWEEP_GRACE": "0"})


@pytest.fixture
def bank() -> FakeBankClient:
    return FakeBankClient()


@pytest.fixture
def broker() -> FakeEnqueuer:
    return FakeEnqueuer()


@pytest.fixture
def app(settings: Settings, bank: FakeBankClient, broker: FakeEnqueuer) -> Flask:
    def factory(observer: Callable[..., None], shop_no: str | None = None) -> FakeBankClient:
        bank.observer = observer
        return bank

    return create_app(settings, enqueuer=broker, client_factory=factory, configure_logs=False)


@pytest.fixture
def cli(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def new_order(settings: Settings) -> Callable[..., Order]:
    """A pending order created through the real service (a fake bank of its own numbers the TSNos)."""
    issuer = FakeBankClient()

    def make(order_no: str, amount_twd: int = 500, pay_type: str = "A") -> Order:
        with transaction(settings.database_url) as session:
            return create_order(session, issuer, settings,
                                NewOrder(amount_twd=amount_twd, pay_type=pay_type, product_name="ops test",
                                         order_no=order_no))

    return make
