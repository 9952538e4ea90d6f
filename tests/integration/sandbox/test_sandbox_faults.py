"""Fault injection, seen through the project's client: each fault maps to the error it must cause."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from core.settings import load_settings
from core.sinopac.client import QPayClient
from core.sinopac.errors import (
    BankConnectionError,
    BankHTTPError,
    BankRejection,
    BankTimeout,
    NotAnEnvelope,
    QPayError,
    SignatureMismatch,
)
from core.sinopac.messages import OrderQueryRequest
from tests.integration.sandbox.conftest import FAST, Receiver, Sandbox, create_atm, create_card, start
from tests.support.procs import Proc, base_env
from tests.support.services import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def impatient(sandbox: Sandbox) -> Iterator[QPayClient]:
    """A client that gives up reading after half a second."""
    settings = load_settings({"QPAY_API_BASE_URL": sandbox.api, "QPAY_READ_TIMEOUT": "0.5"})
    with QPayClient(settings) as qpay:
        yield qpay


def test_fixed_latency_delays_the_scoped_service_only(client: QPayClient, sandbox: Sandbox) -> None:
    sandbox.faults(latency_ms=400, services=["OrderQuery"])

    t0 = time.monotonic()
    create_card(client, "LAT-1")
    t1 = time.monotonic()
    client.query_orders(OrderQueryRequest(order_no="LAT-1"))
    t2 = time.monotonic()

    assert t1 - t0 < 0.4
    assert t2 - t1 >= 0.4


def test_random_latency_stays_within_its_range(client: QPayClient, sandbox: Sandbox) -> None:
    sandbox.faults(latency_ms=[100, 150], services=["OrderQuery"])

    t0 = time.monotonic()
    client.query_orders(OrderQueryRequest(pay_flag="Y"))

    assert 0.1 <= time.monotonic() - t0 < 2


def test_error_rate_one_answers_the_configured_http_status(client: QPayClient, sandbox: Sandbox) -> None:
    sandbox.faults(error_rate=1, error_statuses=[502], services=["OrderQuery"])

    with pytest.raises(BankHTTPError) as caught:
        client.query_orders(OrderQueryRequest(pay_flag="Y"))

    assert caught.value.status == 502
    assert caught.value.retryable is True


def test_an_error_share_fails_some_calls_and_not_others(client: QPayClient, sandbox: Sandbox) -> None:
    sandbox.faults(error_rate=0.5, seed=7, services=["OrderQuery"])
    outcomes: Counter[str] = Counter()

    for _ in range(40):
        try:
            client.query_orders(OrderQueryRequest(pay_flag="Y"))
            outcomes["ok"] += 1
        except BankHTTPError as exc:
            outcomes[str(exc.status)] += 1

    assert 5 < outcomes["ok"] < 35
    assert set(outcomes) <= {"ok", "500", "502", "503"}
    assert len(outcomes) >= 3


def test_a_hang_outlasts_the_client_read_timeout(impatient: QPayClient, sandbox: Sandbox) -> None:
    sandbox.faults(hang_rate=1, hang_seconds=3, services=["OrderQuery"])

    with pytest.raises(BankTimeout):
        impatient.query_orders(OrderQueryRequest(pay_flag="Y"))


def test_a_short_hang_ends_with_a_closed_connection(client: QPayClient, sandbox: Sandbox) -> None:
    sandbox.faults(hang_rate=1, hang_seconds=0.2, services=["OrderQuery"])

    with pytest.raises(BankConnectionError):
        client.query_orders(OrderQueryRequest(pay_flag="Y"))


def test_a_body_cut_in_half_is_not_an_envelope_so_a_transport_failure(
    client: QPayClient, sandbox: Sandbox
) -> None:
    sandbox.faults(malformed_rate=1, services=["OrderPayQuery"])

    with pytest.raises(NotAnEnvelope) as caught:
        client.pay_query("a" * 64)
    assert caught.value.retryable is True


def test_a_nonce_reply_cut_in_half_is_a_transport_failure(client: QPayClient, sandbox: Sandbox) -> None:
    sandbox.faults(malformed_rate=1, services=["Nonce"])

    with pytest.raises(NotAnEnvelope):
        client.query_orders(OrderQueryRequest(pay_flag="Y"))


def test_a_maintenance_page_is_a_transport_failure(client: QPayClient, sandbox: Sandbox) -> None:
    sandbox.faults(html_rate=1, services=["OrderPayQuery"])

    with pytest.raises(NotAnEnvelope, match="not JSON: '<!DOCTYPE html>"):
        client.pay_query("a" * 64)


def test_a_misdirected_pay_reply_is_signed_and_names_the_other_order(
    client: QPayClient, sandbox: Sandbox
) -> None:
    create_atm(client, "MIS-A9")
    create_atm(client, "MIS-B9")
    token = sandbox.pay("MIS-A9")["PayToken"]
    sandbox.faults(misdirect_order_no="MIS-B9")

    result = client.pay_query(token)  # verifies: the Sign does not cover TSResultContent

    assert result.result is not None
    assert (result.result.order_no, result.result.status) == ("MIS-B9", "S")
    (row,) = client.query_orders(OrderQueryRequest(order_no="MIS-B9")).orders
    assert row.pay_status == "1A200"  # the bank's own OrderQuery still says unpaid


def test_a_wrong_sign_is_detected_by_the_client(client: QPayClient, sandbox: Sandbox) -> None:
    sandbox.faults(bad_sign_rate=1, services=["OrderQuery"])

    with pytest.raises(SignatureMismatch):
        client.query_orders(OrderQueryRequest(pay_flag="Y"))


def test_fail_next_fails_exactly_the_next_n_order_calls(client: QPayClient, sandbox: Sandbox) -> None:
    sandbox.faults(fail_next=3)
    errors: list[str] = []

    for _ in range(4):
        try:
            client.query_orders(OrderQueryRequest(pay_flag="Y"))
            errors.append("ok")
        except QPayError as exc:
            errors.append(type(exc).__name__)

    assert errors == ["BankHTTPError", "BankHTTPError", "BankHTTPError", "ok"]
    assert sandbox.get("/sandbox/faults").json()["fail_next"] == 0


def test_fail_next_counts_only_calls_in_scope(client: QPayClient, sandbox: Sandbox) -> None:
    sandbox.faults(fail_next=1, services=["OrderPayQuery"])

    create_card(client, "SCOPE-1")
    client.query_orders(OrderQueryRequest(order_no="SCOPE-1"))
    with pytest.raises(BankHTTPError):
        client.pay_query("b" * 64)
    with pytest.raises(BankRejection):  # the fault is used up: the bank answers, unknown token
        client.pay_query("b" * 64)


def test_fail_next_drop_closes_the_connection(client: QPayClient, sandbox: Sandbox) -> None:
    sandbox.faults(fail_next=1, fail_next_action="drop")

    with pytest.raises(BankConnectionError):
        client.query_orders(OrderQueryRequest(pay_flag="Y"))


def test_a_fault_after_processing_loses_the_reply_but_not_the_order(
    client: QPayClient, sandbox: Sandbox
) -> None:
    sandbox.faults(fail_next=1, fail_phase="after", services=["OrderCreate"])

    with pytest.raises(BankHTTPError):
        create_atm(client, "AFTER-1")
    with pytest.raises(BankRejection) as again:
        create_atm(client, "AFTER-1")

    assert sandbox.order("AFTER-1")["PayStatus"] == "1A200"
    assert again.value.code == "E0201"


def test_dropped_callbacks_are_never_sent(client: QPayClient, sandbox: Sandbox, receiver: Receiver) -> None:
    sandbox.faults(drop_callback_rate=1)
    create_atm(client, "DROP-1", backend_url=receiver.url)

    sandbox.pay("DROP-1")

    assert sandbox.payment("DROP-1")["callback"] == "dropped"
    assert receiver.count() == 0
    rows = client.query_orders(OrderQueryRequest(order_no="DROP-1")).orders
    assert [r.pay_status for r in rows] == ["1A400"]


def test_duplicated_callbacks_are_sent_twice(
    client: QPayClient, sandbox: Sandbox, receiver: Receiver
) -> None:
    sandbox.faults(duplicate_callback_rate=1)
    create_atm(client, "DUPCB-1", backend_url=receiver.url)

    token = sandbox.pay("DUPCB-1")["PayToken"]
    payment = sandbox.wait_payment("DUPCB-1", lambda p: len(p["attempts"]) == 2, "the send and its duplicate")

    assert receiver.count() == 2
    assert receiver.received[0] == receiver.received[1] == {"ShopNo": "NA0001_001", "PayToken": token}
    assert [(a["duplicate"], a["acknowledged"]) for a in payment["attempts"]] == [(False, True), (True, True)]
    assert payment["callback"] == "delivered"


def test_faults_can_be_read_and_cleared(sandbox: Sandbox) -> None:
    sandbox.faults(error_rate=0.25, latency_ms=[5, 10])

    current = sandbox.get("/sandbox/faults").json()
    cleared = sandbox.faults(clear=True, bad_sign_rate=0.5)

    assert (current["error_rate"], current["latency_ms"]) == (0.25, [5, 10])
    assert (cleared["error_rate"], cleared["latency_ms"], cleared["bad_sign_rate"]) == (0.0, 0, 0.5)


@pytest.mark.parametrize(
    ("patch", "words"),
    [
        ({"error_rate": 2}, "error_rate"),
        ({"latency_ms": [10, 5]}, "min <= max"),
        ({"services": ["Refund"]}, "services"),
        ({"fail_next": -1}, "fail_next"),
        ({"hang_seconds": 1000}, "hang_seconds"),
        ({"explode": True}, "unknown fault setting(s): explode"),
        ([1, 2], "JSON object"),
    ],
)
def test_invalid_fault_settings_get_400_and_change_nothing(
    sandbox: Sandbox, patch: object, words: str
) -> None:
    before = sandbox.get("/sandbox/faults").json()

    response = sandbox.post("/sandbox/faults", patch)

    assert response.status_code == 400
    assert words in response.json()["error"]
    assert sandbox.get("/sandbox/faults").json() == before


def test_reset_clears_faults_orders_and_stats(client: QPayClient, sandbox: Sandbox) -> None:
    create_card(client, "RESET-1")
    sandbox.faults(error_rate=1)

    sandbox.post("/sandbox/reset")

    assert sandbox.get("/sandbox/faults").json()["error_rate"] == 0
    assert sandbox.get("/sandbox/orders/RESET-1").status_code == 404
    assert sandbox.get("/sandbox/stats").json()["calls"] == {}


def test_stats_count_calls_and_faults_per_service(client: QPayClient, sandbox: Sandbox) -> None:
    sandbox.faults(fail_next=1, services=["OrderQuery"])
    create_card(client, "STATS-1")
    with pytest.raises(BankHTTPError):
        client.query_orders(OrderQueryRequest(order_no="STATS-1"))

    stats = sandbox.get("/sandbox/stats").json()

    assert stats["calls"] == {"Nonce": 2, "OrderCreate": 1, "OrderQuery": 1}
    assert stats["outcomes"]["fault_error"] == 1
    assert stats["outcomes"]["ok"] == 1


def test_faults_given_at_start_are_active_and_restored_by_reset() -> None:
    bank = start(*FAST, SANDBOX_FAULTS=json.dumps({"error_rate": 1, "services": ["OrderQuery"]}))
    try:
        bank.faults(clear=True)
        bank.post("/sandbox/reset")
        restored = bank.get("/sandbox/faults").json()
    finally:
        bank.proc.stop()

    assert (restored["error_rate"], restored["services"]) == (1.0, ["OrderQuery"])


def test_invalid_start_faults_stop_the_sandbox_with_a_clear_message() -> None:
    proc = Proc("sandbox-badfaults", [sys.executable, "-m", "sandbox", "--port", str(free_port()),
                                      "--faults", '{"error_rate": "lots"}'], base_env()).start()
    assert proc.popen is not None

    assert proc.popen.wait(30) == 2
    assert "error_rate must be a number from 0 to 1" in proc.log()
