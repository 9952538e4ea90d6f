"""The web process with two shops: orders name their shop, callbacks of any configured shop are taken."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from core.sinopac.messages import OrderCreateRequest
from core.sinopac.types import BankCallRecord, OrderCreateResult
from tests.unit.webhook.helpers import FakeBank, FakeEnqueuer, auth, make_settings, token_row
from webhook import create_app

ONE, TWO = "NA0001_001", "NA0001_002"
ATM = {"amount": 500, "pay_type": "A", "product_name": "Oolong tea"}
SHOPS = json.dumps([
    {"shop_no": ONE, "a1": "1" * 16, "a2": "2" * 16, "b1": "3" * 16, "b2": "4" * 16, "key_id": "k-one"},
    {"shop_no": TWO, "name": "Outlet", "a1": "5" * 16, "a2": "6" * 16, "b1": "7" * 16, "b2": "8" * 16,
     "key_id": "k-two"},
])


@dataclasses.dataclass
class ShopBank(FakeBank):
    """A shop's fake bank: TSNos of its own (they are unique across the bank)."""

    shop_no: str = ONE

    def create_order(self, request: OrderCreateRequest) -> OrderCreateResult:
        result = super().create_order(request)
        return dataclasses.replace(result, shop_no=self.shop_no, ts_no=f"{self.shop_no}-{len(self.calls)}")


@pytest.fixture
def banks() -> dict[str, ShopBank]:
    return {ONE: ShopBank(shop_no=ONE), TWO: ShopBank(shop_no=TWO)}


@pytest.fixture
def two_shop_app(db_url: str, enqueuer: FakeEnqueuer, banks: dict[str, ShopBank]) -> Flask:
    def client_factory(observer: Callable[[BankCallRecord], None], shop_no: str | None = None) -> ShopBank:
        bank = banks[shop_no or ONE]
        bank.observer = observer
        return bank

    return create_app(make_settings(db_url, QPAY_SHOPS=SHOPS), enqueuer=enqueuer,
                      client_factory=client_factory, configure_logs=False)


@pytest.fixture
def web(two_shop_app: Flask) -> FlaskClient:
    return two_shop_app.test_client()


@pytest.mark.parametrize(("shop_no", "error"), [
    (None, "shop_no: is required: this deployment serves several shops"),
    ("NA0009_001", "shop_no: is not a shop of this deployment"),
    ("bad shop!", "shop_no must be 1-20 characters of A-Z a-z 0-9 _"),
])
def test_an_order_must_name_a_configured_shop(web: FlaskClient, banks: dict[str, ShopBank],
                                              shop_no: str | None, error: str) -> None:
    body = {**ATM, **({"shop_no": shop_no} if shop_no else {})}
    resp = web.post("/api/orders", json=body, headers=auth())
    assert resp.status_code == 400
    assert (resp.get_json()["error"], resp.get_json()["field"]) == (error, "shop_no")
    assert banks[ONE].calls == banks[TWO].calls == []


def test_each_order_is_created_with_its_shops_client_and_one_order_no_may_serve_both(
    web: FlaskClient, banks: dict[str, ShopBank]
) -> None:
    for shop in (TWO, ONE):
        resp = web.post("/api/orders", json={**ATM, "order_no": "SAME-1", "shop_no": shop}, headers=auth())
        assert resp.status_code == 201
        assert resp.get_json()["shop_no"] == shop
    assert [len(banks[ONE].calls), len(banks[TWO].calls)] == [1, 1]
    again = web.post("/api/orders", json={**ATM, "order_no": "SAME-1", "shop_no": TWO}, headers=auth())
    assert again.status_code == 400
    assert web.get("/api/orders/SAME-1", headers=auth()).status_code == 400  # which shop's?
    shown = web.get("/api/orders/SAME-1?shop_no=NA0001_002", headers=auth()).get_json()
    assert (shown["shop_no"], shown["ts_no"]) == (TWO, "NA0001_002-1")


@pytest.mark.parametrize("shop_no", [ONE, TWO])
def test_a_callback_of_any_configured_shop_is_recorded_under_it(web: FlaskClient, db_url: str,
                                                                shop_no: str) -> None:
    token = (shop_no[-1] * 64)
    resp = web.post("/qpay/backend", json={"ShopNo": shop_no, "PayToken": token})
    assert resp.data == b'{"Status":"S"}'
    row = token_row(db_url, token)
    assert row is not None
    assert row.shop_no == shop_no


def test_a_callback_naming_an_unconfigured_shop_is_refused_with_400(web: FlaskClient, db_url: str) -> None:
    resp = web.post("/qpay/backend", json={"ShopNo": "NA0001_003", "PayToken": "c" * 64})
    assert resp.status_code == 400
    assert token_row(db_url, "c" * 64) is None


@pytest.fixture
def pages(db_url: str, enqueuer: FakeEnqueuer, banks: dict[str, ShopBank]) -> FlaskClient:
    def client_factory(observer: Callable[[BankCallRecord], None], shop_no: str | None = None) -> ShopBank:
        return banks[shop_no or ONE]

    settings = make_settings(db_url, QPAY_SHOPS=SHOPS, CHECKOUT_SECRET="c" * 40, SHOP_NAME="Tea House")
    return create_app(settings, enqueuer=enqueuer, client_factory=client_factory,
                      configure_logs=False).test_client()


def test_checkout_links_name_the_shop_and_show_that_shops_order_and_name(pages: FlaskClient) -> None:
    links = {}
    for shop, amount in ((ONE, 111), (TWO, 222)):
        body = {**ATM, "amount": amount, "order_no": "SAME-2", "shop_no": shop}
        resp = pages.post("/api/orders", json=body, headers=auth())
        assert resp.status_code == 201
        links[shop] = resp.get_json()["checkout_url"].removeprefix("https://shop.example")
        assert links[shop].endswith(f"&shop={shop}")
    one, two = (pages.get(links[s]) for s in (ONE, TWO))
    assert (one.status_code, two.status_code) == (200, 200)
    one_text, two_text = one.get_data(as_text=True), two.get_data(as_text=True)
    assert "111" in one_text
    assert "Tea House" in one_text  # no name of its own: SHOP_NAME
    assert "222" in two_text
    assert "Outlet" in two_text  # shop two's own name
    # A link of one shop does not open the other shop's order of the same number.
    forged = links[ONE].replace(f"shop={ONE}", f"shop={TWO}")
    assert pages.get(forged).status_code == 404
    assert pages.get(links[ONE].replace(f"&shop={ONE}", "&shop=NA0009_001")).status_code == 404


def test_the_return_page_shows_the_order_of_the_tokens_shop(pages: FlaskClient, db_url: str) -> None:
    from sqlalchemy import update

    from core.db import transaction
    from core.models import PayToken

    for shop, amount in ((ONE, 333), (TWO, 444)):
        body = {**ATM, "amount": amount, "order_no": "SAME-3", "shop_no": shop}
        assert pages.post("/api/orders", json=body, headers=auth()).status_code == 201
    token = "9" * 64
    assert pages.post("/qpay/backend", json={"ShopNo": TWO, "PayToken": token}).status_code == 200
    with transaction(db_url) as session:  # as the worker links a resolved token to its order
        session.execute(update(PayToken).where(PayToken.pay_token == token)
                        .values(state="resolved", order_no="SAME-3"))
    page = pages.get(f"/qpay/return/{token}").get_data(as_text=True)
    assert "444" in page
    assert "333" not in page
