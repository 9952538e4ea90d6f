"""The customer's pages: checkout (signed link), the PayToken's return page, languages, the way back."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import urlsplit

import html5lib
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from core.checkout import checkout_token
from core.db import transaction
from core.models import Order, PayToken
from core.secrets import Secret
from tests.unit.webhook.helpers import (
    CHECKOUT_SECRET,
    SHOP,
    TOKEN,
    FakeEnqueuer,
    auth,
    make_settings,
    refusing_database,
)
from webhook import create_app
from webhook.texts import TEXTS

ATM = {"amount": 1234, "pay_type": "A", "product_name": "Oolong <tea>", "order_no": "A-1", "expire_days": 2}
CARD = {"amount": 999, "pay_type": "C", "product_name": "Pouch", "order_no": "C-1"}
SHOP_URL = "https://shop.example/orders/{order_no}"


def make_app(db_url: str, bank: object, **env: str) -> Flask:
    return create_app(make_settings(db_url, **env), enqueuer=FakeEnqueuer(),
                      client_factory=lambda observer, shop_no=None: bank, configure_logs=False)  # type: ignore[arg-type,return-value]


@pytest.fixture
def shop_client(db_url: str, bank: object) -> FlaskClient:
    return make_app(db_url, bank, SHOP_NAME="茶葉小舖", SHOP_RETURN_URL=SHOP_URL).test_client()


def create(client: FlaskClient, order: dict[str, object]) -> str:
    resp = client.post("/api/orders", json=order, headers=auth())
    assert resp.status_code == 201, resp.get_data(as_text=True)
    url = resp.get_json()["checkout_url"]
    assert url.startswith(f"https://shop.example/checkout/{order['order_no']}?t=")
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def set_status(db_url: str, order_no: str, status: str) -> None:
    with transaction(db_url) as s:
        s.execute(update(Order).where(Order.order_no == order_no).values(status=status))


def valid_html(page: str) -> None:
    """A strict HTML5 parse: any parse error (unclosed tags, bad nesting, stray text) fails."""
    html5lib.HTMLParser(strict=True).parse(page)


def text(resp: object) -> str:
    return resp.get_data(as_text=True)  # type: ignore[attr-defined, no-any-return]


# --- checkout page --------------------------------------------------------------------------------

def test_atm_checkout_shows_the_account_deadline_and_instructions_in_chinese(shop_client):
    url = create(shop_client, ATM)
    resp = shop_client.get(url)
    page = text(resp)
    assert resp.status_code == 200
    valid_html(page)
    assert '<html lang="zh-TW">' in page
    assert "茶葉小舖" in page
    assert "A-1" in page
    assert "NT$1,234" in page
    assert "Oolong &lt;tea&gt;" in page  # the product name is escaped
    assert "807（永豐銀行）" in page
    assert '<span class="acct" id="account">9992 2530 1746 17</span>' in page
    assert 'data-copy="99922530174617"' in page
    assert re.search(r'id="deadline">\d{4}/\d\d/\d\d 23:59（台北時間）<', page)
    assert TEXTS["zh-TW"]["atm_step_2"] in page
    assert "待付款" in page
    assert '<noscript><meta http-equiv="refresh" content="10"></noscript>' in page
    nonce = resp.headers["Content-Security-Policy"].split("'nonce-")[1].split("'")[0]
    assert f'<script nonce="{nonce}">' in page
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["Cache-Control"] == "no-store"
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing external


def test_card_checkout_links_to_the_banks_page_with_a_plain_link(shop_client):
    page = text(shop_client.get(create(shop_client, CARD)))
    valid_html(page)
    assert '<a id="pay-card" class="btn wide" href="https://bank.example/PayCard?TD=1&amp;TK=2"' in page
    assert "<form" not in page  # form-action 'self' would block a post to the bank
    assert "信用卡" in page
    assert "NT$999" in page


def test_card_page_url_that_is_not_http_is_not_linked(shop_client, db_url):
    url = create(shop_client, CARD)
    with transaction(db_url) as s:
        s.execute(update(Order).values(card_pay_url="javascript:alert(1)"))
    page = text(shop_client.get(url))
    assert "javascript:" not in page
    assert 'id="pay-card"' not in page


@pytest.mark.parametrize("tamper", ["missing", "wrong", "other order", "unknown order"])
def test_checkout_without_the_orders_own_token_is_a_404_page(shop_client, tamper):
    url = create(shop_client, ATM)
    path, token = url.split("?t=")
    bad = {
        "missing": path,
        "wrong": f"{path}?t={token[:-2]}xx",
        "other order": f"{path}?t={checkout_token(Secret(CHECKOUT_SECRET), 'A-2')}",
        "unknown order": f"/checkout/A-3?t={token}",
    }[tamper]
    resp = shop_client.get(bad)
    assert resp.status_code == 404
    assert resp.mimetype == "text/html"
    page = text(resp)
    valid_html(page)
    assert "找不到此頁面" in page
    assert "A-1" not in page
    assert "NT$" not in page


def test_without_checkout_secret_there_is_no_checkout_link_or_page(db_url, bank):
    client = make_app(db_url, bank, CHECKOUT_SECRET="").test_client()
    resp = client.post("/api/orders", json=ATM, headers=auth())
    assert resp.get_json()["checkout_url"] is None
    assert client.get("/checkout/A-1?t=anything").status_code == 404


def test_order_read_back_carries_the_same_checkout_url(shop_client):
    url = create(shop_client, ATM)
    body = shop_client.get("/api/orders/A-1", headers=auth()).get_json()
    assert body["checkout_url"].endswith(url)


@pytest.mark.parametrize(("status", "word", "note"), [
    ("paid", "付款成功", "note_paid"), ("failed", "付款失敗", "note_failed"),
    ("expired", "已逾期", "note_expired"), ("needs_review", "待人工確認", "note_review"),
])
def test_final_checkout_says_the_outcome_instead_of_instructions(shop_client, db_url, status, word, note):
    url = create(shop_client, ATM)
    set_status(db_url, "A-1", status)
    page = text(shop_client.get(url))
    valid_html(page)
    assert word in page
    assert TEXTS["zh-TW"][note] in page
    assert "9992 2530" not in page
    assert TEXTS["zh-TW"]["atm_step_1"] not in page
    assert 'data-final="1"' in page
    assert '<a id="back" class="btn wide" href="https://shop.example/orders/A-1">返回商店</a>' in page
    refresh = '<meta http-equiv="refresh" content="5;url=https://shop.example/orders/A-1">'
    assert f"<noscript>{refresh}</noscript>" in page


def test_without_shop_return_url_the_final_page_says_it_may_be_closed(db_url, bank):
    client = make_app(db_url, bank).test_client()
    url = create(client, ATM)
    set_status(db_url, "A-1", "paid")
    page = text(client.get(url))
    assert "您可以關閉此頁面。" in page
    assert 'id="back"' not in page
    assert "http-equiv" not in page
    assert f'<p class="shop" id="shop-name">{SHOP}</p>' in page  # no SHOP_NAME: the ShopNo


def test_shop_return_delay_zero_keeps_the_button_but_never_redirects(db_url, bank):
    client = make_app(db_url, bank, SHOP_RETURN_URL=SHOP_URL, SHOP_RETURN_DELAY="0").test_client()
    url = create(client, ATM)
    set_status(db_url, "A-1", "paid")
    page = text(client.get(url))
    assert 'id="back"' in page
    assert "http-equiv" not in page
    assert 'data-delay="0"' in page


# --- languages -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("header", "query", "lang"), [
    (None, "", "zh-TW"),
    ("en-US,en;q=0.9", "", "en"),
    ("zh-TW,zh;q=0.9,en;q=0.8", "", "zh-TW"),
    ("fr-FR,en;q=0.5,zh-TW;q=0.4", "", "en"),
    ("fr-FR", "", "zh-TW"),
    ("en", "&lang=zh-TW", "zh-TW"),
    (None, "&lang=en", "en"),
])
def test_language_follows_lang_then_accept_language_then_chinese(shop_client, header, query, lang):
    url = create(shop_client, ATM)
    headers = {"Accept-Language": header} if header else {}
    page = text(shop_client.get(url + query, headers=headers))
    assert f'<html lang="{lang}">' in page
    assert TEXTS[lang]["atm_steps_title"] in page
    assert ('id="status-zh"' in page) == (lang == "en")


def test_english_page_is_english_and_offers_chinese(shop_client):
    url = create(shop_client, ATM)
    page = text(shop_client.get(url, headers={"Accept-Language": "en"}))
    valid_html(page)
    assert '<span id="status" class="status s-awaiting" role="status">Awaiting payment</span>' in page
    assert '<span id="status-zh" class="small" lang="zh-TW">待付款</span>' in page  # for the shop's staff
    assert "807 (Bank SinoPac)" in page
    assert "(Taipei time)" in page
    assert "中文</a>" in page
    assert "&amp;lang=zh-TW" in page


def test_both_languages_have_every_string():
    assert set(TEXTS["zh-TW"]) == set(TEXTS["en"])


# --- return page ---------------------------------------------------------------------------------

def returned(client: FlaskClient) -> str:
    resp = client.post("/qpay/return", data={"ShopNo": SHOP, "PayToken": TOKEN})
    assert resp.status_code == 303
    return str(resp.headers["Location"])


def link_token(db_url: str, order_no: str | None, state: str = "resolved") -> None:
    with transaction(db_url) as s:
        s.execute(update(PayToken).values(state=state, order_no=order_no))


def test_return_page_before_resolution_says_confirming_and_nothing_else(shop_client):
    create(shop_client, ATM)
    page = text(shop_client.get(returned(shop_client)))
    valid_html(page)
    assert "確認中" in page
    assert "A-1" not in page
    assert "NT$" not in page
    assert '<noscript><meta http-equiv="refresh" content="3"></noscript>' in page
    assert 'data-final="0"' in page


def test_return_page_of_a_paid_order_shows_shop_order_amount_method_and_the_way_back(shop_client, db_url):
    create(shop_client, CARD)
    location = returned(shop_client)
    link_token(db_url, "C-1")
    set_status(db_url, "C-1", "paid")
    page = text(shop_client.get(location))
    valid_html(page)
    for shown in ("茶葉小舖", "C-1", "NT$999", "信用卡", "付款成功", "返回商店", "5 秒後將自動返回商店。"):
        assert shown in page
    assert 'href="https://shop.example/orders/C-1"' in page
    # the public endpoint still tells only the word
    assert shop_client.get(f"/qpay/tokens/{TOKEN}/status").get_json() == {"status": "paid"}


def test_return_page_of_a_resolved_but_pending_order_shows_details_and_keeps_polling(shop_client, db_url):
    create(shop_client, CARD)
    location = returned(shop_client)
    link_token(db_url, "C-1")
    page = text(shop_client.get(location))
    assert "確認中" in page
    assert "C-1" in page
    assert 'data-final="0"' in page


@pytest.mark.parametrize("state", ["untrusted", "rejected"])
def test_return_page_of_a_token_the_shop_must_check_says_so(shop_client, db_url, state):
    location = returned(shop_client)
    link_token(db_url, None, state)
    page = text(shop_client.get(location))
    assert "待人工確認" in page
    assert 'data-final="1"' in page
    assert "您可以關閉此頁面。" in page  # no order number: no way back to a shop page for it


def test_return_page_of_an_unknown_or_malformed_token_is_404(shop_client):
    assert shop_client.get(f"/qpay/return/{'b' * 64}").status_code == 404
    assert shop_client.get("/qpay/return/a%20b").status_code == 404


def test_shop_return_url_encodes_the_order_number(db_url, bank):
    client = make_app(db_url, bank, SHOP_RETURN_URL="https://shop.example/done?order={order_no}").test_client()
    url = create(client, {**ATM, "order_no": "A_1-x"})
    set_status(db_url, "A_1-x", "paid")
    assert 'href="https://shop.example/done?order=A_1-x"' in text(client.get(url))


def test_deadline_is_taipei_time(shop_client, db_url):
    url = create(shop_client, CARD)
    with transaction(db_url) as s:
        s.execute(update(Order).values(expires_at=datetime(2026, 12, 1, 15, 30, tzinfo=UTC)))
    assert "2026/12/01 23:29" in text(shop_client.get(url))


@pytest.mark.parametrize("page", ["checkout", "return"])
def test_database_down_is_a_503_page_not_json(db_url, bank, page):
    app = make_app(db_url, bank)
    client = app.test_client()
    url = create(client, ATM) if page == "checkout" else f"/qpay/return/{TOKEN}"
    app.extensions["qpay"].unit_of_work = refusing_database
    resp = client.get(url)
    assert resp.status_code == 503
    assert resp.mimetype == "text/html"
    assert TEXTS["zh-TW"]["unavailable"] in text(resp)
