"""OrderCreate, OrderQuery and OrderPayQuery through the project's client, over real HTTP."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from core.sinopac.client import QPayClient
from core.sinopac.errors import BankRejection
from core.sinopac.messages import OrderQueryRequest
from tests.integration.sandbox.conftest import (
    HASH_ID,
    Sandbox,
    create_atm,
    create_card,
    opened,
    raw_order,
    sealed,
)

pytestmark = pytest.mark.integration

OK = "S0000 – 處理成功"


def test_atm_order_create_returns_a_14_digit_account_and_links(client: QPayClient) -> None:
    result = create_atm(client, "ATM-1001", amount=79900)

    assert result.status == "S"
    assert result.description == OK
    assert result.amount == 79900
    assert re.fullmatch(r"\d{14}", result.atm_pay_no or "")
    assert result.web_atm_url
    assert result.otp_url
    assert re.fullmatch(r"NA0001\d{8}", result.ts_no)


def test_card_order_create_returns_a_card_pay_url(client: QPayClient, sandbox: Sandbox) -> None:
    result = create_card(client, "CARD-1001")

    assert result.card_pay_url
    assert result.card_pay_url.startswith(sandbox.base + "/sandbox/card/CARD-1001?")


def test_order_create_reply_echoes_params_and_amount_as_integer(sandbox: Sandbox) -> None:
    message = {"ShopNo": "NA0001_001", "OrderNo": "P-1", "Amount": "18000", "CurrencyID": "TWD",
               "PayType": "C",
               "PrdtName": "x", "ReturnURL": "http://127.0.0.1:9/r", "Param1": "alpha",
               "CardParam": {"AutoBilling": "Y"}}

    inner = opened(raw_order(sandbox, sealed(sandbox, "OrderCreate", message)))

    assert inner["Status"] == "S"
    assert inner["Amount"] == 18000
    assert inner["Param1"] == "alpha"


def test_duplicate_order_no_is_rejected(client: QPayClient) -> None:
    create_atm(client, "DUP-1")

    with pytest.raises(BankRejection) as caught:
        create_card(client, "DUP-1")

    assert caught.value.code == "E0201"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"Amount": 0}, "E0101"),
        ({"Amount": 1_000_000_000}, "E0101"),
        ({"CurrencyID": "USD"}, "E0101"),
        ({"PayType": "B"}, "E0602"),
        ({"PrdtName": "100% 好"}, "E0101"),
        ({"OrderNo": "a" * 51}, "E0101"),
        ({"ReturnURL": "ftp://example.com/x"}, "E0101"),
        ({"ATMParam": {"ExpireDate": "20200101"}}, "E0101"),
        ({"ATMParam": {"ExpireDate": "2030-01-01"}}, "E0101"),
        ({"ATMParam": []}, "E0102"),
        ({"PrdtName": ""}, "E0102"),
        ({"ShopNo": "NA0002_001"}, "E0301"),
    ],
)
def test_invalid_order_create_field_gets_status_f_with_an_e_code(
    sandbox: Sandbox, change: dict[str, object], code: str
) -> None:
    message = {"ShopNo": "NA0001_001", "OrderNo": "BAD-1", "Amount": 50000, "CurrencyID": "TWD",
               "PayType": "A",
               "PrdtName": "商品", "ReturnURL": "http://127.0.0.1:9/r",
               "ATMParam": {"ExpireDate": (datetime.now(UTC) + timedelta(days=3)).strftime("%Y%m%d")}}
    message.update(change)

    inner = opened(raw_order(sandbox, sealed(sandbox, "OrderCreate", message)))

    assert inner["Status"] == "F"
    assert inner["Description"].startswith(code + " – ")


@pytest.mark.parametrize(
    ("card", "code"),
    [
        ({"AutoBilling": "X"}, "E0101"),
        ({"AutoBilling": "N"}, "E0101"),  # ExpBillingDays missing
        ({"AutoBilling": "N", "ExpBillingDays": 8}, "E0101"),
        ({"AutoBilling": "Y", "ExpMinutes": 31}, "E0101"),
        ({"AutoBilling": "Y", "PayTypeSub": "INSTALMENT"}, "E0602"),
    ],
)
def test_invalid_card_param_gets_status_f(sandbox: Sandbox, card: dict[str, object], code: str) -> None:
    message = {"ShopNo": "NA0001_001", "OrderNo": "BADC-1", "Amount": 100, "CurrencyID": "TWD",
               "PayType": "C",
               "PrdtName": "x", "ReturnURL": "http://127.0.0.1:9/r", "CardParam": card}

    inner = opened(raw_order(sandbox, sealed(sandbox, "OrderCreate", message)))

    assert inner["Description"].startswith(code + " – ")


def test_order_query_by_order_no_shows_unpaid_then_paid(client: QPayClient, sandbox: Sandbox) -> None:
    create_atm(client, "Q-1")
    before = client.query_orders(OrderQueryRequest(order_no="Q-1")).orders[0]

    sandbox.pay("Q-1")
    after = client.query_orders(OrderQueryRequest(order_no="Q-1")).orders[0]

    assert (before.pay_status, before.pay_date) == ("1A200", "")
    assert after.pay_status == "1A400"
    assert re.fullmatch(r"\d{12}", after.pay_date)
    assert after.raw["ATMParam"]["BankNo"] == "807"


def test_order_query_pay_flag_separates_paid_unpaid_and_overdue(client: QPayClient, sandbox: Sandbox) -> None:
    for order_no in ("F-PAID", "F-UNPAID", "F-OVERDUE", "F-CARD"):
        create_atm(client, order_no)
    sandbox.pay("F-PAID")
    assert sandbox.post("/sandbox/orders/F-OVERDUE/expire").status_code == 200
    create_card(client, "F-DECLINED")
    sandbox.pay("F-DECLINED", "failed")

    flags = {flag: sorted(r.order_no for r in client.query_orders(OrderQueryRequest(pay_flag=flag)).orders)
             for flag in "YNO"}
    statuses = {r.order_no: r.pay_status for r in client.query_orders(OrderQueryRequest(pay_flag="N")).orders}

    assert flags == {"Y": ["F-PAID"], "N": ["F-CARD", "F-DECLINED", "F-UNPAID"], "O": ["F-OVERDUE"]}
    assert statuses["F-DECLINED"] == "1C500"


def test_order_query_by_pay_window_finds_only_payments_inside_it(
    client: QPayClient, sandbox: Sandbox
) -> None:
    create_atm(client, "W-PAID")
    create_atm(client, "W-UNPAID")
    sandbox.pay("W-PAID")
    now = datetime.now(UTC)

    inside = client.query_orders(
        OrderQueryRequest(pay_from=now - timedelta(minutes=5), pay_to=now + timedelta(minutes=1)))
    earlier = client.query_orders(
        OrderQueryRequest(pay_from=now - timedelta(days=2), pay_to=now - timedelta(days=1)))
    by_order_date = client.query_orders(OrderQueryRequest(
        order_from=now - timedelta(minutes=5), order_to=now + timedelta(minutes=1)
    ))

    assert [r.order_no for r in inside.orders] == ["W-PAID"]
    assert earlier.orders == ()
    assert {r.order_no for r in by_order_date.orders} == {"W-PAID", "W-UNPAID"}


def test_order_query_returns_at_most_300_rows(client: QPayClient) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: create_atm(client, f"MANY-{i:04d}"), range(305)))

    result = client.query_orders(OrderQueryRequest(pay_flag="N"))

    assert len(result.orders) == 300


def test_order_query_without_a_condition_is_rejected(sandbox: Sandbox) -> None:
    inner = opened(raw_order(sandbox, sealed(sandbox, "OrderQuery", {"ShopNo": "NA0001_001"})))

    assert inner["Status"] == "F"
    assert inner["Description"].startswith("E0401 – ")


def test_pay_query_of_a_paid_atm_order_is_status_s_with_string_amount(
    client: QPayClient, sandbox: Sandbox
) -> None:
    create_atm(client, "PQ-1", amount=9440300)
    token = sandbox.pay("PQ-1")["PayToken"]

    result = client.pay_query(token)

    assert result.status == "S"
    assert result.description == OK
    assert result.result is not None
    assert result.result.raw["Amount"] == "9440300"
    assert (result.result.status, result.result.order_no, result.result.ap_type) == ("S", "PQ-1", "PayOut")
    assert result.result.description == ""


def test_pay_query_of_a_declined_card_is_status_f_with_description(
    client: QPayClient, sandbox: Sandbox
) -> None:
    create_card(client, "PQ-DECLINED")
    token = sandbox.pay("PQ-DECLINED", "failed")["PayToken"]

    result = client.pay_query(token)

    assert result.status == "S"
    assert result.result is not None
    assert result.result.status == "F"
    assert result.result.description.startswith("E0701 – ")


def test_pay_query_of_an_unknown_token_is_rejected(client: QPayClient) -> None:
    with pytest.raises(BankRejection) as caught:
        client.pay_query("0" * 64)

    assert caught.value.code == "E0501"


def test_concurrent_order_creates_get_distinct_transaction_numbers(
    client: QPayClient, sandbox: Sandbox
) -> None:
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: create_card(client, f"CONC-{i}"), range(64)))

    stats = sandbox.get("/sandbox/stats").json()

    assert len({r.ts_no for r in results}) == 64
    assert stats["calls"]["OrderCreate"] == 64
    assert stats["calls"]["Nonce"] == 64
    assert stats["orders"] == 64


def test_reply_is_signed_with_its_own_nonce(sandbox: Sandbox) -> None:
    request = sealed(sandbox, "OrderQuery", {"ShopNo": "NA0001_001", "PayFlag": "Y"})

    response = raw_order(sandbox, request)

    body = response.json()
    assert body["Nonce"] != request["Nonce"]
    assert len(body["Nonce"]) == 108
    assert opened(response)["Status"] == "S"  # decrypted and verified with the reply's nonce
    assert HASH_ID not in response.text
