"""The real Flask app on a private SQLite database, with a fake broker and a fake bank."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from core.db import dispose_engines, make_engine
from core.models import Base
from core.sinopac.types import BankCallRecord
from tests.unit.webhook.helpers import FakeBank, FakeEnqueuer, make_settings
from webhook import create_app


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'web.db'}"
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()
    yield url
    dispose_engines()


@pytest.fixture
def enqueuer() -> FakeEnqueuer:
    return FakeEnqueuer()


@pytest.fixture
def bank() -> FakeBank:
    return FakeBank()


@pytest.fixture
def app(db_url: str, enqueuer: FakeEnqueuer, bank: FakeBank) -> Flask:
    def client_factory(observer: Callable[[BankCallRecord], None], shop_no: str | None = None) -> FakeBank:
        bank.observer = observer
        return bank

    return create_app(make_settings(db_url), enqueuer=enqueuer, client_factory=client_factory,
                      configure_logs=False)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
