"""POST /qpay/return and the public status endpoint the return page polls."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import update

from core.db import transaction
from core.models import Order, PayToken
from tests.unit.webhook.helpers import SHOP, TOKEN, count_tokens, refusing_database, token_row

RETURN = "/qpay/return"


def add_order(db_url: str, order_no: str, status: str) -> None:
    with transaction(db_url) as s:
        s.add(Order(shop_no=SHOP, order_no=order_no, amount=50000, pay_type="A", product_name="Tea",
                    status=status))


def test_form_return_is_recorded_enqueued_and_sent_to_the_token_page(client, db_url, enqueuer):
    # given the customer's browser coming back with the bank's form post
    resp = client.post(RETURN, data={"ShopNo": SHOP, "PayToken": TOKEN})
    # then the token is stored with source "return", enqueued, and the browser is sent (303) to its page
    assert resp.status_code == 303
    assert resp.headers["Location"] == f"/qpay/return/{TOKEN}"
    row = token_row(db_url, TOKEN)
    assert row is not None
    assert row.source == "return"
    assert enqueuer.sent == [row.id]
    page = client.get(resp.headers["Location"])
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    nonce = page.headers["Content-Security-Policy"].split("'nonce-")[1].split("'")[0]
    assert f'<script nonce="{nonce}">' in page.get_data(as_text=True)


def test_return_keeps_an_explicit_language_on_the_way_to_the_page(client):
    resp = client.post(RETURN + "?lang=en", data={"ShopNo": SHOP, "PayToken": TOKEN})
    assert resp.headers["Location"] == f"/qpay/return/{TOKEN}?lang=en"


def test_json_return_is_accepted_too(client, db_url):
    resp = client.post(RETURN, data=json.dumps({"ShopNo": SHOP, "PayToken": TOKEN}),
                       content_type="application/json")
    assert resp.status_code == 303
    assert count_tokens(db_url) == 1


def test_multipart_return_is_accepted(client, db_url):
    resp = client.post(RETURN, data={"ShopNo": SHOP, "PayToken": TOKEN}, content_type="multipart/form-data")
    assert resp.status_code == 303
    assert count_tokens(db_url) == 1


def test_return_after_backend_counts_a_second_receipt(client, db_url):
    client.post("/qpay/backend", json={"ShopNo": SHOP, "PayToken": TOKEN})
    client.post(RETURN, data={"ShopNo": SHOP, "PayToken": TOKEN})
    row = token_row(db_url, TOKEN)
    assert row is not None
    assert (row.receipts, row.source) == (2, "backend")


def test_bad_return_is_a_400_html_page_with_the_problem_escaped(client, db_url):
    resp = client.post(RETURN, data={"ShopNo": SHOP, "PayToken": "<img src=x>"})
    assert resp.status_code == 400
    assert resp.mimetype == "text/html"
    page = resp.get_data(as_text=True)
    assert "PayToken must be 1-128 characters" in page
    assert "<img" not in page
    assert count_tokens(db_url) == 0


def test_return_with_duplicate_field_is_rejected(client, db_url):
    body = f"ShopNo={SHOP}&PayToken={TOKEN}&PayToken=b".encode()
    resp = client.post(RETURN, data=body, content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 400
    assert "PayToken given more than once" in resp.get_data(as_text=True)
    assert count_tokens(db_url) == 0


def test_return_with_unknown_shop_is_rejected(client, db_url):
    resp = client.post(RETURN, data={"ShopNo": "XX0000_001", "PayToken": TOKEN})
    assert resp.status_code == 400
    assert count_tokens(db_url) == 0


def test_return_oversize_is_413_html(client, db_url):
    resp = client.post(RETURN, data={"ShopNo": SHOP, "PayToken": TOKEN, "pad": "x" * 5000})
    assert resp.status_code == 413
    assert resp.mimetype == "text/html"


def test_return_with_database_down_is_503_page(app, db_url):
    app.extensions["qpay"].unit_of_work = refusing_database
    resp = app.test_client().post(RETURN, data={"ShopNo": SHOP, "PayToken": TOKEN})
    assert resp.status_code == 503
    assert "請稍後再試" in resp.get_data(as_text=True)


def test_status_of_unresolved_token_is_pending(client, db_url):
    client.post("/qpay/backend", json={"ShopNo": SHOP, "PayToken": TOKEN})
    resp = client.get(f"/qpay/tokens/{TOKEN}/status")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "pending"}
    assert resp.headers["Cache-Control"] == "no-store"


def test_status_of_resolved_token_is_only_the_order_status_word(client, db_url):
    client.post("/qpay/backend", json={"ShopNo": SHOP, "PayToken": TOKEN})
    add_order(db_url, "ORD1", "paid")
    with transaction(db_url) as s:
        s.execute(update(PayToken).values(state="resolved", order_no="ORD1"))
    resp = client.get(f"/qpay/tokens/{TOKEN}/status")
    assert resp.get_json() == {"status": "paid"}


def test_status_of_rejected_token_is_rejected(client, db_url):
    client.post("/qpay/backend", json={"ShopNo": SHOP, "PayToken": TOKEN})
    with transaction(db_url) as s:
        s.execute(update(PayToken).values(state="rejected"))
    assert client.get(f"/qpay/tokens/{TOKEN}/status").get_json() == {"status": "rejected"}


@pytest.mark.parametrize("parked", ["untrusted", "dead"])
def test_status_of_a_parked_token_says_the_shop_reviews_it(client, db_url, parked):
    # Given a token whose bank reply failed verification, or that failed every resolution (no order)
    client.post("/qpay/backend", json={"ShopNo": SHOP, "PayToken": TOKEN})
    with transaction(db_url) as s:
        s.execute(update(PayToken).values(state=parked))
    # Then the customer's page is told it is under review, not left "waiting for the bank"
    assert client.get(f"/qpay/tokens/{TOKEN}/status").get_json() == {"status": "needs_review"}


def test_status_of_unknown_token_is_404_unknown(client):
    resp = client.get(f"/qpay/tokens/{'b' * 64}/status")
    assert resp.status_code == 404
    assert resp.get_json() == {"status": "unknown"}


def test_status_with_malformed_token_is_400(client):
    resp = client.get("/qpay/tokens/a%20b/status")
    assert resp.status_code == 400
    assert resp.get_json()["field"] == "PayToken"
