"""The ops commands with two shops: `shops` lists fingerprints (never keys), `orders show` / `stuck`
name the shop, and an OrderNo two shops share needs --shop."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner

from core.db import transaction
from core.services.orders import NewOrder, create_order
from core.settings import Settings, load_settings
from tests.support.fakes import FakeBankClient
from webhook import create_app

from .conftest import FakeEnqueuer

ONE, TWO = "NA0001_001", "NA0001_002"
KEYS_ONE = {"a1": "1" * 16, "a2": "2" * 16, "b1": "3" * 16, "b2": "4" * 16, "key_id": "key-one-secret"}
KEYS_TWO = {"a1": "5" * 16, "a2": "6" * 16, "b1": "7" * 16, "b2": "8" * 16, "key_id": "key-two-secret"}
NEXT_TWO = {"a1": "9" * 16, "a2": "A" * 16, "b1": "B" * 16, "b2": "C" * 16, "key_id": "key-two-next"}
SECRETS = [v for keys in (KEYS_ONE, KEYS_TWO, NEXT_TWO) for v in keys.values()]


@pytest.fixture
def two_shops(db_url: str) -> Settings:
    shops = [{"shop_no": ONE, "name": "Main", **KEYS_ONE}, {"shop_no": TWO, **KEYS_TWO, "next": NEXT_TWO}]
    return load_settings({"DATABASE_URL": db_url, "REDIS_URL": "redis://127.0.0.1:1/0",
                          "QPAY_API_BASE_URL": "http://127.0.0.1:9/QPay.WebAPI/api/",
                          "QPAY_SHOPS": json.dumps(shops)})


@pytest.fixture
def shops_cli(two_shops: Settings) -> FlaskCliRunner:
    banks = {ONE: FakeBankClient(shop_no=ONE), TWO: FakeBankClient(shop_no=TWO)}

    def factory(observer: Callable[..., None], shop_no: str | None = None) -> FakeBankClient:
        return banks[shop_no or ONE]

    app: Flask = create_app(two_shops, enqueuer=FakeEnqueuer(), client_factory=factory, configure_logs=False)
    return app.test_cli_runner()


def _order(settings: Settings, shop_no: str, order_no: str, ts_base: int) -> None:
    bank = FakeBankClient(shop_no=shop_no)
    bank._ts = iter(range(ts_base, ts_base + 10))  # type: ignore[assignment]
    with transaction(settings.database_url) as session:
        create_order(session, bank, settings, NewOrder(500, "A", "ops", order_no=order_no, shop_no=shop_no))


def test_shops_lists_every_shop_with_fingerprints_and_no_key(shops_cli: FlaskCliRunner,
                                                             two_shops: Settings) -> None:
    out = shops_cli.invoke(args=["shops"])
    assert out.exit_code == 0, out.output
    assert f"{ONE} (Main)  [default]" in out.output
    two = two_shops.shop_for(TWO)
    assert two.next_keys is not None
    assert f"active keys {two.active.fingerprint}" in out.output
    assert f"next   keys {two.next_keys.fingerprint}" in out.output
    assert not [s for s in SECRETS if s in out.output]


def test_orders_show_and_stuck_name_the_shop_and_a_shared_order_no_needs_shop(
    shops_cli: FlaskCliRunner, two_shops: Settings
) -> None:
    _order(two_shops, ONE, "SHARED-1", 100)
    _order(two_shops, TWO, "SHARED-1", 200)

    ambiguous = shops_cli.invoke(args=["orders", "show", "SHARED-1"])
    assert ambiguous.exit_code == 2
    assert "exists in several shops (NA0001_001, NA0001_002): name one with --shop" in ambiguous.output

    shown = shops_cli.invoke(args=["orders", "show", "SHARED-1", "--shop", TWO])
    assert shown.exit_code == 0, shown.output
    assert f"shop {TWO}," in shown.output
    assert "NA000100000200" in shown.output  # shop two's order, not shop one's

    stuck = shops_cli.invoke(args=["orders", "stuck", "--older-than", "0s"])
    assert stuck.exit_code == 0, stuck.output
    assert f"{ONE}   SHARED-1" in stuck.output
    assert f"{TWO}   SHARED-1" in stuck.output
