"""The orders API: bearer auth, validation naming the field, bank failures mapped to 502/503."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from core.db import transaction
from core.models import BankCall, Order
from core.sinopac.errors import BankConnectionError, BankRejection, BankTimeout, SignatureMismatch
from tests.unit.webhook.helpers import auth, make_settings
from webhook import create_app

ORDERS = "/api/orders"
ATM = {"amount": 500, "pay_type": "A", "product_name": "Oolong tea"}


def orders_in(db_url: str) -> int:
    with transaction(db_url) as s:
        return int(s.scalar(select(func.count()).select_from(Order)) or 0)


def test_create_atm_order_answers_201_with_payment_details(client, db_url, bank):
    resp = client.post(ORDERS, json={**ATM, "order_no": "A-1", "expire_days": 5}, headers=auth())
    assert resp.status_code == 201
    body = resp.get_json()
    assert body["order_no"] == "A-1"
    assert body["status"] == "pending"
    assert body["amount"] == 500
    assert body["pay_type"] == "A"
    assert body["ts_no"] == "NA000100000042"
    assert body["atm_pay_no"] == "99922530174617"
    assert "card_pay_url" not in body
    assert body["expires_at"].endswith("+00:00")
    assert bank.calls[0].amount == 50000
    assert bank.calls[0].backend_url == "https://shop.example/qpay/backend"
    assert bank.calls[0].return_url == "https://shop.example/qpay/return"
    assert orders_in(db_url) == 1


def test_create_card_order_returns_the_card_url(client, db_url):
    resp = client.post(ORDERS, json={"amount": 1200, "pay_type": "C", "product_name": "Kettle"},
                       headers=auth())
    assert resp.status_code == 201
    body = resp.get_json()
    assert body["card_pay_url"] == "https://bank.example/PayCard?TD=1&TK=2"
    assert body["order_no"].startswith("Q")


def test_a_card_order_with_expire_minutes_asks_the_bank_for_that_link_validity(client, db_url, bank):
    # given a card order whose link should be valid for 5 minutes
    body = {"amount": 1200, "pay_type": "C", "product_name": "Kettle", "order_no": "C-5", "expire_minutes": 5}

    # when it is created
    resp = client.post(ORDERS, json=body, headers=auth())

    # then the bank is asked for ExpMinutes 5 and the stored expiry is 5 minutes after creation
    assert resp.status_code == 201
    assert bank.calls[0].card_exp_minutes == 5
    with transaction(db_url) as s:
        order = s.scalars(select(Order).where(Order.order_no == "C-5")).one()
        assert order.expires_at - order.created_at == timedelta(minutes=5)
    assert resp.get_json()["expires_at"] == order.expires_at.isoformat()


def test_a_card_order_without_expire_minutes_keeps_the_30_minute_link(client, db_url, bank):
    resp = client.post(ORDERS, json={"amount": 1200, "pay_type": "C", "product_name": "Kettle"},
                       headers=auth())

    assert resp.status_code == 201
    assert bank.calls[0].card_exp_minutes == 30


def test_get_order_returns_it_with_its_history(client, db_url):
    client.post(ORDERS, json={**ATM, "order_no": "A-2"}, headers=auth())
    resp = client.get(f"{ORDERS}/A-2", headers=auth())
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["order_no"] == "A-2"
    assert body["product_name"] == "Oolong tea"
    assert [(e["from_status"], e["to_status"], e["source"]) for e in body["events"]] == [
        (None, "pending", "api")
    ]


def test_get_unknown_order_is_404(client):
    resp = client.get(f"{ORDERS}/NOPE", headers=auth())
    assert resp.status_code == 404
    assert resp.get_json()["error"] == "order not found"


def test_get_with_malformed_order_no_is_400(client):
    assert client.get(f"{ORDERS}/bad%25no", headers=auth()).status_code == 400


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"},
                                     {"Authorization": "Bearer"}, {"Authorization": "Bearer tést"}])
def test_missing_or_wrong_token_is_401(client, db_url, bank, headers):
    resp = client.post(ORDERS, json=ATM, headers=headers)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert bank.calls == []
    assert client.get(f"{ORDERS}/A-1", headers=headers).status_code == 401


def test_unset_api_token_closes_the_api_with_503_but_not_the_callbacks(db_url, enqueuer):
    app = create_app(make_settings(db_url, API_TOKEN=""), enqueuer=enqueuer, configure_logs=False)
    client = app.test_client()
    resp = client.post(ORDERS, json=ATM, headers=auth())
    assert resp.status_code == 503
    assert resp.get_json()["error"] == "API_TOKEN is not configured"
    assert client.post("/qpay/backend", json={"ShopNo": "NA0001_001", "PayToken": "t1"}).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"pay_type": "A", "product_name": "x"}, "amount"),
        ({**ATM, "amount": True}, "amount"),
        ({**ATM, "amount": 10.0}, "amount"),
        ({**ATM, "amount": "500"}, "amount"),
        ({**ATM, "amount": 0}, "amount"),
        ({**ATM, "amount": 30_001}, "amount"),
        ({**ATM, "amount": 1_000_001, "pay_type": "C"}, "amount"),
        ({**ATM, "pay_type": "B"}, "pay_type"),
        ({**ATM, "pay_type": None}, "pay_type"),
        ({**ATM, "product_name": ""}, "product_name"),
        ({**ATM, "product_name": "x" * 61}, "product_name"),
        ({**ATM, "product_name": "50% off"}, "product_name"),
        ({**ATM, "product_name": "O'Neil"}, "product_name"),
        ({**ATM, "product_name": 'say "hi"'}, "product_name"),
        ({**ATM, "product_name": 7}, "product_name"),
        ({**ATM, "order_no": "has space"}, "order_no"),
        ({**ATM, "order_no": "x" * 51}, "order_no"),
        ({**ATM, "order_no": ""}, "order_no"),
        ({**ATM, "order_no": 12}, "order_no"),
        ({**ATM, "expire_days": False}, "expire_days"),
        ({**ATM, "expire_days": 61}, "expire_days"),
        ({**ATM, "pay_type": "C", "expire_days": 3}, "expire_days"),
        ({**ATM, "expire_minutes": 10}, "expire_minutes"),
        ({**ATM, "pay_type": "C", "expire_minutes": 0}, "expire_minutes"),
        ({**ATM, "pay_type": "C", "expire_minutes": 31}, "expire_minutes"),
        ({**ATM, "pay_type": "C", "expire_minutes": "10"}, "expire_minutes"),
        ({**ATM, "pay_type": "C", "expire_minutes": 10.0}, "expire_minutes"),
        ({**ATM, "pay_type": "C", "expire_minutes": False}, "expire_minutes"),
        ({**ATM, "amout": 5}, "amout"),
    ],
)
def test_invalid_order_is_400_naming_the_field(client, db_url, bank, body, field):
    resp = client.post(ORDERS, json=body, headers=auth())
    assert resp.status_code == 400
    assert resp.get_json()["field"] == field
    assert bank.calls == []
    assert orders_in(db_url) == 0


def test_atm_amount_at_the_ceiling_is_accepted(client):
    assert client.post(ORDERS, json={**ATM, "amount": 30_000}, headers=auth()).status_code == 201


def test_non_json_body_is_400(client):
    resp = client.post(ORDERS, data=b"amount=5", headers=auth())
    assert resp.status_code == 400
    assert resp.get_json()["error"] == "body is not valid JSON"


def test_duplicate_order_no_is_400_naming_order_no(client, db_url):
    client.post(ORDERS, json={**ATM, "order_no": "DUP"}, headers=auth())
    resp = client.post(ORDERS, json={**ATM, "order_no": "DUP"}, headers=auth())
    assert resp.status_code == 400
    assert resp.get_json()["field"] == "order_no"


def test_bank_rejection_is_502_with_the_bank_code(client, db_url, bank):
    bank.error = BankRejection("refused", service="OrderCreate", code="E0602", description="收款方式未啟用")
    resp = client.post(ORDERS, json=ATM, headers=auth())
    assert resp.status_code == 502
    assert resp.get_json()["code"] == "E0602"
    assert orders_in(db_url) == 0


@pytest.mark.parametrize("error", [BankTimeout("t"), BankConnectionError("refused")])
def test_bank_unreachable_is_503_and_the_call_is_recorded(client, db_url, bank, error):
    bank.error = error
    resp = client.post(ORDERS, json=ATM, headers=auth())
    assert resp.status_code == 503
    assert orders_in(db_url) == 0
    with transaction(db_url) as s:
        assert s.scalar(select(BankCall.outcome)) == "transport_error"


def test_bank_protocol_error_is_502(client, db_url, bank):
    bank.error = SignatureMismatch("bad sign", service="OrderCreate")
    resp = client.post(ORDERS, json=ATM, headers=auth())
    assert resp.status_code == 502
    assert "protocol" in resp.get_json()["error"]
    assert orders_in(db_url) == 0
