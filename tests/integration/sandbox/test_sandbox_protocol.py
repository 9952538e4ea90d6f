"""The bank's envelope checks: nonces, Sign, Message, ShopNo, X-KeyID, JSON styles, extra shops."""

from __future__ import annotations

import json
import sys
import time

import pytest
import requests
from Crypto.Cipher import AES
from Crypto.Util.Padding import pad

from core.settings import load_settings
from core.sinopac import crypto, envelope
from core.sinopac.client import QPayClient
from core.sinopac.errors import MalformedReply
from core.sinopac.messages import OrderQueryRequest
from core.variables import SANDBOX_KEY_ID, SANDBOX_SHOP_NO
from tests.integration.sandbox.conftest import (
    FAST,
    HASH_ID,
    Sandbox,
    create_card,
    nonce,
    opened,
    raw_order,
    sealed,
    start,
)
from tests.support.poll import wait_for
from tests.support.procs import Proc, base_env
from tests.support.services import free_port

pytestmark = pytest.mark.integration

QUERY = {"ShopNo": SANDBOX_SHOP_NO, "PayFlag": "Y"}


def envelope_error(response: requests.Response) -> str:
    body = response.json()
    assert response.status_code == 200
    assert "Message" not in body
    assert "Sign" not in body
    assert body["Status"] == "F"
    return str(body["Description"])


def test_nonce_reply_is_a_108_character_opaque_string(sandbox: Sandbox) -> None:
    value = nonce(sandbox)

    assert len(value) == 108
    assert value.isascii()


def test_a_nonce_is_single_use(sandbox: Sandbox) -> None:
    first = sealed(sandbox, "OrderQuery", QUERY)
    assert opened(raw_order(sandbox, first))["Status"] == "S"

    again = raw_order(sandbox, first)

    assert envelope_error(again).startswith("E9004 – ")


def test_an_expired_nonce_is_refused() -> None:
    short = start(*FAST, "--nonce-ttl", "0.3")
    try:
        body = sealed(short, "OrderQuery", QUERY)
        issued = time.monotonic()
        wait_for(lambda: time.monotonic() - issued > 0.5, timeout=5, message="the nonce to age")

        description = envelope_error(raw_order(short, body))
    finally:
        short.proc.stop()

    assert description.startswith("E9004 – ")
    assert "expired" in description


def test_a_nonce_never_issued_is_refused(sandbox: Sandbox) -> None:
    body = envelope.seal_request("OrderQuery", QUERY, shop_no=SANDBOX_SHOP_NO, nonce="bm90LWlzc3VlZA==",
                                 hash_id=HASH_ID)

    assert envelope_error(raw_order(sandbox, body)).startswith("E9004 – ")


def test_a_wrong_sign_is_refused(sandbox: Sandbox) -> None:
    body = sealed(sandbox, "OrderQuery", QUERY)
    body["Sign"] = crypto.sign({**QUERY, "PayFlag": "N"}, body["Nonce"], HASH_ID)

    assert envelope_error(raw_order(sandbox, body)).startswith("E9006 – ")


def test_a_message_under_another_key_does_not_decrypt(sandbox: Sandbox) -> None:
    body = sealed(sandbox, "OrderQuery", QUERY, hash_id="0" * 32)

    assert envelope_error(raw_order(sandbox, body)).startswith("E9005 – ")


def test_an_unknown_shop_is_refused_at_nonce_and_order(sandbox: Sandbox) -> None:
    nonce_reply = requests.post(sandbox.api + "Nonce", json={"ShopNo": "ZZ9999_001"},
                                headers={"X-KeyID": SANDBOX_KEY_ID}, timeout=10)
    body = sealed(sandbox, "OrderQuery", QUERY)
    body["ShopNo"] = "ZZ9999_001"

    assert envelope_error(nonce_reply).startswith("E9002 – ")
    assert envelope_error(raw_order(sandbox, body)).startswith("E9002 – ")


def test_a_wrong_x_key_id_is_refused(sandbox: Sandbox) -> None:
    nonce_reply = requests.post(sandbox.api + "Nonce", json={"ShopNo": SANDBOX_SHOP_NO},
                                headers={"X-KeyID": "wrong"}, timeout=10)
    missing = requests.post(sandbox.api + "Nonce", json={"ShopNo": SANDBOX_SHOP_NO}, timeout=10)
    order = raw_order(sandbox, sealed(sandbox, "OrderQuery", QUERY), key_id="wrong")

    assert envelope_error(nonce_reply).startswith("E9003 – ")
    assert envelope_error(missing).startswith("E9003 – ")
    assert envelope_error(order).startswith("E9003 – ")


def test_client_reports_an_envelope_error_as_malformed_reply(sandbox: Sandbox) -> None:
    settings = load_settings({"QPAY_API_BASE_URL": sandbox.api, "QPAY_SHOP_NO": SANDBOX_SHOP_NO,
                              "QPAY_HASH_A1": "0A2A9C1D5E7B4086", "QPAY_HASH_A2": "0BB2C3D4E5F60718",
                              "QPAY_HASH_B1": "9E8D7C6B5A493827", "QPAY_HASH_B2": "9E1E2D3C4B5A6978",
                              "QPAY_KEY_ID": "not-the-key-id"})

    with QPayClient(settings) as client, pytest.raises(MalformedReply) as caught:
        client.query_orders(OrderQueryRequest(pay_flag="Y"))

    assert caught.value.retryable is False


def test_missing_envelope_fields_and_unknown_service_are_refused(sandbox: Sandbox) -> None:
    partial = sealed(sandbox, "OrderQuery", QUERY)
    del partial["Sign"]
    unknown = sealed(sandbox, "OrderQuery", QUERY)
    unknown["APIService"] = "OrderMaintain"

    assert envelope_error(raw_order(sandbox, partial)).startswith("E9001 – ")
    assert envelope_error(raw_order(sandbox, unknown)).startswith("E9007 – ")


def test_a_body_that_is_not_json_gets_http_400(sandbox: Sandbox) -> None:
    response = requests.post(sandbox.api + "Order", data=b"\xff{not json", timeout=10)

    assert response.status_code == 400
    assert response.json()["Description"].startswith("E9001 – ")


def test_php_style_json_with_unicode_and_slash_escapes_is_accepted(sandbox: Sandbox) -> None:
    message = {"ShopNo": SANDBOX_SHOP_NO, "OrderNo": "PHP-1", "Amount": 50000, "CurrencyID": "TWD",
               "PayType": "C",
               "PrdtName": "測試商品", "ReturnURL": "http://127.0.0.1:9/return",
               "CardParam": {"AutoBilling": "Y", "ExpMinutes": 10}}
    value = nonce(sandbox)
    php_json = json.dumps(message).replace("/", "\\/")  # ensure_ascii: \uXXXX, as PHP's json_encode
    assert "\\u6e2c" in php_json
    cipher = AES.new(HASH_ID.encode(), AES.MODE_CBC, iv=crypto.iv_from_nonce(value).encode())
    body = {"Version": "1.0.0", "ShopNo": SANDBOX_SHOP_NO, "APIService": "OrderCreate",
            "Sign": crypto.sign(message, value, HASH_ID), "Nonce": value,
            "Message": cipher.encrypt(pad(php_json.encode(), 16)).hex().upper()}

    inner = opened(raw_order(sandbox, body))

    assert inner["Status"] == "S"
    assert sandbox.order("PHP-1")["PrdtName"] == "測試商品"


def test_the_real_base_path_prefixes_are_served(sandbox: Sandbox) -> None:
    url = sandbox.base + "/funBIZ-Sbx/QPay.WebAPI/api/Nonce"
    headers = {"X-KeyID": SANDBOX_KEY_ID}
    response = requests.post(url, json={"ShopNo": SANDBOX_SHOP_NO}, headers=headers, timeout=10)

    assert len(response.json()["Nonce"]) == 108


def test_extra_shops_have_their_own_keys() -> None:
    extra = [{"shop_no": "NA0002_001", "a1": "1111111111111111", "a2": "2222222222222222",
              "b1": "3333333333333333", "b2": "4444444444444444", "key_id": "key-two"}]
    bank = start(*FAST, SANDBOX_EXTRA_SHOPS=json.dumps(extra))
    try:
        settings = load_settings({"QPAY_API_BASE_URL": bank.api, "QPAY_SHOP_NO": "NA0002_001",
                                  "QPAY_HASH_A1": "1111111111111111", "QPAY_HASH_A2": "2222222222222222",
                                  "QPAY_HASH_B1": "3333333333333333", "QPAY_HASH_B2": "4444444444444444",
                                  "QPAY_KEY_ID": "key-two"})
        with QPayClient(settings) as client:
            result = create_card(client, "SHOP2-1")
        view = bank.order("SHOP2-1")
    finally:
        bank.proc.stop()

    assert result.shop_no == "NA0002_001"
    assert result.ts_no.startswith("NA0002")
    assert view["ShopNo"] == "NA0002_001"


def test_malformed_extra_shops_stop_the_sandbox_with_a_clear_message() -> None:
    proc = Proc("sandbox-bad", [sys.executable, "-m", "sandbox", "--port", str(free_port())],
                base_env(SANDBOX_EXTRA_SHOPS='[{"shop_no": "X_1"}]')).start()
    assert proc.popen is not None
    code = proc.popen.wait(30)

    assert code == 2
    assert "SANDBOX_EXTRA_SHOPS[0]" in proc.log()
