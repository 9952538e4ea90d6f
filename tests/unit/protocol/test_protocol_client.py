"""QPayClient against a real HTTP stub bank on loopback: the happy paths and what goes over the wire."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from typing import Any

import pytest
import requests
import urllib3

from core.sinopac import crypto
from core.sinopac.client import QPayClient
from core.sinopac.messages import OrderCreateRequest, OrderQueryRequest
from core.sinopac.types import BankCallRecord

from .bankstub import StubBank, json_reply, new_nonce
from .conftest import HASH_ID, KEY_ID, SHOP_NO, make_settings

TOKEN = "8630ccdda21ef69e17fd66558b6fa6bea03f988805d9c9949d2348755964469f"


def _create_atm(client: QPayClient, order_no: str = "ATM20240101001") -> Any:
    return client.create_order(OrderCreateRequest(
        order_no=order_no,
        amount=123400,
        pay_type="A",
        product_name="測試商品－永豐虛擬帳號 No.1",
        return_url="https://shop.example.com/qpay/return",
        backend_url="https://shop.example.com/qpay/backend",
        expire_date=date(2024, 1, 10),
        memo="備註說明",
    ))


def _order_requests(bank: StubBank) -> list[dict[str, Any]]:
    return [s.body for s in bank.seen if s.path.endswith("/Order")]


def test_atm_order_returns_the_virtual_account(client: QPayClient) -> None:
    result = _create_atm(client)
    assert (result.order_no, result.ts_no, result.amount, result.pay_type) == (
        "ATM20240101001",
        "NA000100000123",
        123400,
        "A",
    )
    assert result.atm_pay_no == "99922530000123"
    assert result.web_atm_url == "https://bank.example/PayWebATM?TD=NA000100000123"
    assert result.otp_url == "https://bank.example/PayOTP?TD=NA000100000123"
    assert result.card_pay_url is None
    assert result.description == "S0000 – 處理成功"


def test_atm_order_sends_nonce_then_a_signed_encrypted_order(client: QPayClient, bank: StubBank) -> None:
    _create_atm(client)
    # then the wire shows Nonce, then Order with the nonce the bank just issued
    assert [s.path.rsplit("/", 1)[1] for s in bank.seen] == ["Nonce", "Order"]
    assert bank.seen[0].body == {"ShopNo": SHOP_NO}
    envelope = bank.seen[1].body
    assert envelope["Nonce"] == bank.nonces_issued[0]
    assert (envelope["Version"], envelope["ShopNo"], envelope["APIService"]) == (
        "1.0.0",
        SHOP_NO,
        "OrderCreate",
    )
    message = crypto.decrypt_message(envelope["Message"], HASH_ID, envelope["Nonce"])
    assert crypto.verify_sign(message, envelope["Nonce"], HASH_ID, envelope["Sign"])
    assert message == {
        "ShopNo": SHOP_NO,
        "OrderNo": "ATM20240101001",
        "Amount": 123400,
        "CurrencyID": "TWD",
        "PayType": "A",
        "PrdtName": "測試商品－永豐虛擬帳號 No.1",
        "ReturnURL": "https://shop.example.com/qpay/return",
        "BackendURL": "https://shop.example.com/qpay/backend",
        "ATMParam": {"ExpireDate": "20240110"},
        "Memo": "備註說明",
    }


def test_x_key_id_header_is_sent_on_both_nonce_and_order(client: QPayClient, bank: StubBank) -> None:
    _create_atm(client)
    assert [s.headers.get("X-KeyID") for s in bank.seen] == [KEY_ID, KEY_ID]
    assert all(s.headers["Content-Type"].startswith("application/json") for s in bank.seen)


def test_every_call_uses_a_fresh_nonce(client: QPayClient, bank: StubBank) -> None:
    _create_atm(client, "ATM20240101001")
    _create_atm(client, "ATM20240101002")
    client.pay_query(TOKEN)
    used = [body["Nonce"] for body in _order_requests(bank)]
    assert used == bank.nonces_issued
    assert len(set(used)) == 3


def test_connections_are_reused_across_calls(client: QPayClient, bank: StubBank) -> None:
    _create_atm(client, "ATM20240101001")
    client.pay_query(TOKEN)
    assert len({s.client_port for s in bank.seen}) == 1


def test_card_order_returns_the_payment_page(client: QPayClient, bank: StubBank) -> None:
    result = client.create_order(OrderCreateRequest(
        order_no="CC20240101002",
        amount=99900,
        pay_type="C",
        product_name="信用卡訂單：高級茶葉禮盒",
        return_url="https://shop.example.com/qpay/return",
        backend_url="https://shop.example.com/qpay/backend",
        card_exp_minutes=15,
        param1="order-42",
    ))
    assert result.card_pay_url == "https://bank.example/PayCard?TD=NA000100000124"
    assert result.atm_pay_no is None
    sent = _order_requests(bank)[0]
    message = crypto.decrypt_message(sent["Message"], HASH_ID, sent["Nonce"])
    assert message["CardParam"] == {"AutoBilling": "Y", "ExpMinutes": 15}
    assert message["Param1"] == "order-42"
    assert "ATMParam" not in message


def test_query_sends_windows_in_taipei_time_and_types_the_rows(client: QPayClient, bank: StubBank) -> None:
    result = client.query_orders(OrderQueryRequest(
        pay_from=datetime(2024, 1, 1, 16, 0, tzinfo=UTC),
        pay_to=datetime(2024, 1, 2, 16, 0, tzinfo=UTC),
        pay_flag="Y",
    ))
    sent = _order_requests(bank)[0]
    message = crypto.decrypt_message(sent["Message"], HASH_ID, sent["Nonce"])
    assert message == {
        "ShopNo": SHOP_NO,
        "PayDateTimeS": "202401020000",
        "PayDateTimeE": "202401030000",
        "PayFlag": "Y",
    }
    (row,) = result.orders
    assert (row.order_no, row.amount, row.pay_status, row.pay_date, row.expire_date) == (
        "ATM20240101001",
        123400,
        "1A400",
        "202401021528",
        "202401102359",
    )


def test_query_amount_sent_as_a_string_becomes_an_int(client: QPayClient, bank: StubBank) -> None:
    def reply(service: str, request: dict[str, Any]) -> Any:
        inner = bank.default_inner(service, request)
        inner["OrderList"][0]["Amount"] = "79900"
        return bank.sealed(service, inner)

    bank.on_order = reply
    (row,) = client.query_orders(OrderQueryRequest(order_no="ATM20240101001")).orders
    assert row.amount == 79900


def test_pay_query_returns_the_payment_with_an_int_amount(client: QPayClient) -> None:
    result = client.pay_query(TOKEN)
    assert (result.status, result.pay_token, result.date) == ("S", TOKEN, "202401021530")
    assert result.result is not None
    assert (result.result.order_no, result.result.amount, result.result.status) == (
        "ATM20240101001",
        123400,
        "S",
    )
    assert (result.result.ts_no, result.result.pay_date, result.result.ap_type) == (
        "NA000100000123",
        "202401021528",
        "PayOut",
    )


def test_pay_query_without_ts_result_content_has_no_result(client: QPayClient, bank: StubBank) -> None:
    def reply(service: str, request: dict[str, Any]) -> Any:
        inner = bank.default_inner(service, request)
        del inner["TSResultContent"]
        return bank.sealed(service, inner)

    bank.on_order = reply
    assert client.pay_query(TOKEN).result is None


def test_observer_gets_one_ok_record_per_call(client: QPayClient, records: list[BankCallRecord]) -> None:
    _create_atm(client)
    client.pay_query(TOKEN)
    assert [(r.api_service, r.key, r.outcome, r.http_status, r.error) for r in records] == [
        ("OrderCreate", "ATM20240101001", "ok", 200, None),
        ("OrderPayQuery", "8630ccdd…", "ok", 200, None),
    ]
    assert all(r.started_at.tzinfo is not None and r.duration_ms >= 0 for r in records)


def test_an_observer_that_raises_never_breaks_the_call(bank: StubBank) -> None:
    def broken(record: BankCallRecord) -> None:
        raise RuntimeError("database is down")

    with QPayClient(make_settings(bank.base_url), observer=broken) as qpay:
        assert _create_atm(qpay).atm_pay_no == "99922530000123"


class _RecordingSession(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[Any] = []

    def post(self, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.timeouts.append(kwargs.get("timeout"))
        return super().post(url, *args, **kwargs)


def test_every_request_has_explicit_connect_and_read_timeouts(bank: StubBank) -> None:
    session = _RecordingSession()
    qpay = QPayClient(
        make_settings(bank.base_url, QPAY_CONNECT_TIMEOUT="2", QPAY_READ_TIMEOUT="7"), http=session
    )
    _create_atm(qpay)
    qpay.pay_query(TOKEN)
    assert session.timeouts == [(2.0, 7.0)] * 4


def test_its_own_pool_sends_with_the_same_timeouts_no_retries_and_no_redirects(
    bank: StubBank, monkeypatch: pytest.MonkeyPatch
) -> None:
    qpay = QPayClient(make_settings(bank.base_url, QPAY_CONNECT_TIMEOUT="2", QPAY_READ_TIMEOUT="7"))
    pool = qpay._http
    assert isinstance(pool, urllib3.HTTPConnectionPool)
    sent: list[tuple[Any, ...]] = []
    urlopen = pool.urlopen

    def recording(method: str, url: str, **kwargs: Any) -> Any:
        timeout = kwargs["timeout"]
        sent.append((timeout.connect_timeout, timeout.read_timeout, kwargs["retries"], kwargs["redirect"]))
        return urlopen(method, url, **kwargs)

    monkeypatch.setattr(pool, "urlopen", recording)
    qpay.pay_query(TOKEN)
    qpay.close()
    assert sent == [(2.0, 7.0, False, False)] * 2


def test_close_keeps_a_session_the_caller_owns(bank: StubBank) -> None:
    session = _RecordingSession()
    closed: list[bool] = []
    session.close = lambda: closed.append(True)  # type: ignore[method-assign]
    QPayClient(make_settings(bank.base_url), http=session).close()
    assert closed == []


def test_close_releases_the_pooled_connections_of_its_own_session(bank: StubBank) -> None:
    own = QPayClient(make_settings(bank.base_url))
    _create_atm(own)
    pool = own._http
    assert isinstance(pool, urllib3.HTTPConnectionPool)  # its own pool, of the bank's host
    assert pool.num_connections == 1
    own.close()
    assert pool.pool is None  # closed: every connection released


def test_client_repr_shows_no_secret(client: QPayClient) -> None:
    text = repr(client)
    assert HASH_ID not in text
    assert KEY_ID not in text
    assert SHOP_NO in text


def _ports_after_two_bursts(bank: StubBank, qpay: QPayClient, threads: int) -> set[int]:
    """`threads` callers at once, twice; each Nonce is held until all of them are in flight."""
    barrier = threading.Barrier(threads, timeout=30)  # generous: CI machines are loaded

    def held_nonce() -> Any:
        barrier.wait()
        return json_reply({"Nonce": new_nonce()})

    bank.on_nonce = held_nonce
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(2):
            assert [r.pay_token for r in pool.map(lambda _: qpay.pay_query(TOKEN), range(threads))] == [
                TOKEN
            ] * threads
    return {s.client_port for s in bank.seen}


def test_a_pool_as_large_as_its_callers_reuses_every_connection(bank: StubBank) -> None:
    # given a client shared by 16 threads (a threads worker pool), sized for them
    qpay = QPayClient(make_settings(bank.base_url, QPAY_READ_TIMEOUT="40"), pool_size=16)
    # when all 16 call at once, twice
    ports = _ports_after_two_bursts(bank, qpay, 16)
    qpay.close()
    # then the second burst ran on the connections of the first: 16 in all
    assert len(ports) == 16


def test_a_pool_smaller_than_its_callers_reconnects(bank: StubBank) -> None:
    # given the same 16 threads sharing a client with the default pool of 10 connections
    qpay = QPayClient(make_settings(bank.base_url, QPAY_READ_TIMEOUT="40"))
    # when all 16 call at once, twice
    ports = _ports_after_two_bursts(bank, qpay, 16)
    qpay.close()
    # then the connections beyond the pool were thrown away and opened again
    assert len(ports) > 16


def test_pool_size_must_be_a_positive_count(bank: StubBank) -> None:
    for bad in (0, -1, True, 2.5):
        with pytest.raises(ValueError, match="pool_size"):
            QPayClient(make_settings(bank.base_url), pool_size=bad)  # type: ignore[arg-type]


def test_the_environments_proxy_and_ca_bundle_are_read_once_when_the_client_is_built(monkeypatch) -> None:
    # (requests would re-read the environment on every request; the client reads it at construction)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/bank-ca.pem")
    settings = make_settings("https://bank.example/QPay.WebAPI/api/")
    with QPayClient(settings) as client:
        http = client._http
        assert http.trust_env is False
        assert http.proxies.get("https") == "http://proxy.example:3128"
        assert http.verify == "/etc/ssl/bank-ca.pem"
    monkeypatch.setenv("NO_PROXY", "bank.example")
    with QPayClient(settings) as bypassed:  # no proxy for the bank: urllib3's pool, same verification
        direct = bypassed._http
        assert isinstance(direct, urllib3.HTTPSConnectionPool)
        assert direct.proxy is None
        assert direct.cert_reqs == "CERT_REQUIRED"
        assert direct.ca_certs == "/etc/ssl/bank-ca.pem"
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with QPayClient(settings) as default:  # requests' own default bundle
        assert default._http.ca_certs == requests.utils.DEFAULT_CA_BUNDLE_PATH  # type: ignore[union-attr]
