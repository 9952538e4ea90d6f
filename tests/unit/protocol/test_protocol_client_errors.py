"""Every way a bank call can fail, against a real HTTP stub: the error type, `retryable`, the record,
and that no secret (hash keys, HashID, X-KeyID, full PayToken) reaches the error text."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest

from core.sinopac import crypto
from core.sinopac.client import QPayClient
from core.sinopac.errors import (
    BankConnectionError,
    BankHTTPError,
    BankProtocolError,
    BankRejection,
    BankTimeout,
    BankTransportError,
    MalformedReply,
    NotAnEnvelope,
    QPayError,
    SignatureMismatch,
    UndecryptableReply,
)
from core.sinopac.messages import OrderCreateRequest, OrderQueryRequest
from core.sinopac.transport import MAX_REPLY_BYTES
from core.sinopac.types import BankCallRecord

from .bankstub import Reply, StubBank, json_reply, new_nonce
from .conftest import HASH_ID, KEY_ID, assert_no_secret, make_settings

TOKEN = "8630ccdda21ef69e17fd66558b6fa6bea03f988805d9c9949d2348755964469f"
Behaviour = Callable[[StubBank, str, dict[str, Any]], Reply]


@dataclass(frozen=True)
class Case:
    behaviour: Behaviour
    error: type[QPayError]
    retryable: bool
    outcome: str
    message: str


def _sealed_with(**changes: Any) -> Behaviour:
    def behaviour(bank: StubBank, service: str, request: dict[str, Any]) -> Reply:
        return bank.sealed(service, {**bank.default_inner(service, request), **changes})

    return behaviour


def _truncated(bank: StubBank, service: str, request: dict[str, Any]) -> Reply:
    reply = bank.sealed(service, bank.default_inner(service, request))
    return Reply(200, reply.body[: len(reply.body) // 2])


def _deeply_nested_message(bank: StubBank, service: str, request: dict[str, Any]) -> Reply:
    # A well-formed envelope whose encrypted message nests past the JSON parser's recursion limit.
    from Crypto.Util.Padding import pad

    nonce = new_nonce()
    plaintext = b'{"Status":"S","Deep":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    message = crypto._cipher(HASH_ID, nonce).encrypt(pad(plaintext, 16)).hex().upper()
    return json_reply({"Version": "1.0.0", "APIService": service, "Nonce": nonce, "Sign": "AB",
                       "Message": message})


def _leaky_500(bank: StubBank, service: str, request: dict[str, Any]) -> Reply:
    # a bank error page that echoes our secrets and the token must not pass them on
    text = f"Internal error key={KEY_ID} id={HASH_ID.lower()} token={request.get('PayToken', '')}"
    return Reply(500, text.encode(), "text/plain")


def _envelope_without(*fields: str) -> Behaviour:
    def behaviour(bank: StubBank, service: str, request: dict[str, Any]) -> Reply:
        reply = bank.sealed(service, bank.default_inner(service, request))
        import json

        body = {k: v for k, v in json.loads(reply.body).items() if k not in fields}
        return json_reply(body)

    return behaviour


def _tampered_sign(bank: StubBank, service: str, request: dict[str, Any]) -> Reply:
    inner = bank.default_inner(service, request)
    nonce = new_nonce()
    # signed over a different amount: the kind of change an attacker would want
    forged = crypto.sign({**inner, "Amount": 1}, nonce, HASH_ID)
    return bank.sealed(service, inner, nonce=nonce, sign=forged)


def _wrong_nonce(bank: StubBank, service: str, request: dict[str, Any]) -> Reply:
    return bank.sealed(service, bank.default_inner(service, request), encrypt_nonce=new_nonce())


def _wrong_key(bank: StubBank, service: str, request: dict[str, Any]) -> Reply:
    other = StubBank(hash_id="87282A2FA0E209EBE1B3713AB56A06C2")
    return other.sealed(service, bank.default_inner(service, request))


CASES = {
    "read timeout": Case(lambda b, s, r: b.hang(), BankTimeout, True, "transport_error", "timed out"),
    "HTTP 500": Case(
        lambda b, s, r: Reply(500, b"Server Error", "text/plain"),
        BankHTTPError,
        True,
        "transport_error",
        "HTTP 500",
    ),
    "HTTP 500 echoing secrets": Case(_leaky_500, BankHTTPError, True, "transport_error", "HTTP 500"),
    "HTTP 429": Case(
        lambda b, s, r: Reply(429, b"slow down", "text/plain"),
        BankHTTPError,
        True,
        "transport_error",
        "HTTP 429",
    ),
    # Anything that is not a QPay envelope at all is what a bank in maintenance or a broken connection
    # produces: a transport failure, retried, never "untrusted" (issue 13, item 1).
    "HTTP 403": Case(
        lambda b, s, r: Reply(403, b"KeyID expired", "text/plain"),
        BankHTTPError,
        True,
        "transport_error",
        "HTTP 403",
    ),
    "HTTP 404": Case(
        lambda b, s, r: Reply(404, b"", "text/plain"), BankHTTPError, True, "transport_error", "HTTP 404"
    ),
    "HTTP 204": Case(
        lambda b, s, r: Reply(204, b"", "text/plain"), BankHTTPError, True, "transport_error", "HTTP 204"
    ),
    "garbage body": Case(
        lambda b, s, r: Reply(200, b"<html>\x00oops</html>", "text/html"),
        NotAnEnvelope,
        True,
        "transport_error",
        "not JSON",
    ),
    "HTML maintenance page": Case(
        lambda b, s, r: Reply(200, b"<!DOCTYPE html><html><body>maintenance</body></html>", "text/html"),
        NotAnEnvelope,
        True,
        "transport_error",
        "not JSON",
    ),
    "empty body": Case(lambda b, s, r: Reply(200, b""), NotAnEnvelope, True, "transport_error", "not JSON"),
    "envelope cut short": Case(_truncated, NotAnEnvelope, True, "transport_error", "not JSON"),
    "JSON that is not an object": Case(
        lambda b, s, r: json_reply(["Status", "S"]), NotAnEnvelope, True, "transport_error", "no QPay answer"
    ),
    "JSON without any envelope field": Case(
        lambda b, s, r: json_reply({"error": "maintenance"}), NotAnEnvelope, True, "transport_error",
        "no QPay answer",
    ),
    "JSON nested past the parser's recursion limit": Case(
        lambda b, s, r: Reply(200, b"[" * 100_000 + b"]" * 100_000), NotAnEnvelope, True, "transport_error",
        "not JSON",
    ),
    "reply over 1 MiB": Case(
        lambda b, s, r: json_reply({"Message": "A" * (MAX_REPLY_BYTES + 10)}), NotAnEnvelope, True,
        "transport_error", "larger than",
    ),
    "signed message nested past the recursion limit": Case(
        _deeply_nested_message, UndecryptableReply, False, "protocol_error", "does not decrypt"
    ),
    "missing Message": Case(
        _envelope_without("Message"), MalformedReply, False, "protocol_error", "lacks Message"
    ),
    "missing Nonce and Sign": Case(
        _envelope_without("Nonce", "Sign"), MalformedReply, False, "protocol_error", "lacks Nonce, Sign"
    ),
    "envelope-level error": Case(
        lambda b, s, r: json_reply({"Status": "F", "Description": "E9999 X-KeyID 過期"}),
        MalformedReply,
        False,
        "protocol_error",
        "unsigned envelope-level error",
    ),
    "tampered Sign": Case(_tampered_sign, SignatureMismatch, False, "protocol_error", "Sign does not verify"),
    "encrypted with the wrong nonce": Case(
        _wrong_nonce, UndecryptableReply, False, "protocol_error", "does not decrypt"
    ),
    "encrypted with another shop's key": Case(
        _wrong_key, UndecryptableReply, False, "protocol_error", "does not decrypt"
    ),
    "non-hex Message": Case(
        lambda b, s, r: json_reply(
            {"Version": "1.0.0", "APIService": s, "Nonce": new_nonce(), "Sign": "AB", "Message": "ZZZZ"}
        ),
        UndecryptableReply,
        False,
        "protocol_error",
        "not hexadecimal",
    ),
    "inner Status F": Case(
        _sealed_with(Status="F", Description="E0602 – 收款方式未啟用"),
        BankRejection,
        False,
        "rejected",
        "E0602",
    ),
    "inner Status neither S nor F": Case(
        _sealed_with(Status="X"), MalformedReply, False, "protocol_error", "not S or F"
    ),
}


def _pay_query(client: QPayClient) -> Any:
    return client.pay_query(TOKEN)


def _create(client: QPayClient) -> Any:
    return client.create_order(OrderCreateRequest(
        order_no="ATM20240101001",
        amount=123400,
        pay_type="A",
        product_name="測試商品",
        return_url="https://shop.example.com/qpay/return",
        backend_url="https://shop.example.com/qpay/backend",
        expire_date=date(2024, 1, 10),
    ))


CALLS = {"OrderPayQuery": _pay_query, "OrderCreate": _create}


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("name", sorted(CASES))
def test_failure_is_typed_with_retryability_and_no_secret(
    name: str, call: str, client: QPayClient, bank: StubBank, records: list[BankCallRecord]
) -> None:
    case = CASES[name]
    bank.on_order = lambda service, request: case.behaviour(bank, service, request)
    # when the call is made
    with pytest.raises(case.error) as info:
        CALLS[call](client)
    error = info.value
    # then the type says whether a retry can help, and the message says where and what
    assert error.retryable is case.retryable
    assert isinstance(error, BankTransportError if case.retryable else (BankProtocolError, BankRejection))
    assert error.service == call
    assert str(error).startswith(call)
    assert case.message in str(error)
    assert_no_secret(str(error), repr(error), extra=(TOKEN,))
    # and the observer saw exactly one record of it
    (record,) = records
    assert (record.api_service, record.outcome) == (call, case.outcome)
    assert record.error == str(error)
    assert_no_secret(repr(record), extra=(TOKEN,))


def test_rejection_carries_the_bank_code_and_description(client: QPayClient, bank: StubBank) -> None:
    bank.on_order = lambda s, r: _sealed_with(Status="F", Description="E0602 – 收款方式未啟用")(bank, s, r)
    with pytest.raises(BankRejection) as info:
        client.pay_query(TOKEN)
    assert (info.value.code, info.value.description) == ("E0602", "E0602 – 收款方式未啟用")


def test_http_error_carries_the_status(client: QPayClient, bank: StubBank) -> None:
    bank.on_order = lambda s, r: Reply(503, b"", "text/plain")
    with pytest.raises(BankHTTPError) as info:
        client.pay_query(TOKEN)
    assert info.value.status == 503


def test_error_body_echoing_secrets_is_scrubbed_but_still_informative(
    client: QPayClient, bank: StubBank
) -> None:
    bank.on_order = lambda s, r: _leaky_500(bank, s, r)
    with pytest.raises(BankHTTPError) as info:
        client.pay_query(TOKEN)
    assert "Internal error key=***" in str(info.value)
    assert "token=8630ccdd…" in str(info.value)


def test_connection_refused_is_retryable(records: list[BankCallRecord]) -> None:
    # given a port nobody listens on
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    qpay = QPayClient(make_settings(f"http://127.0.0.1:{port}/api/"), observer=records.append)
    with pytest.raises(BankConnectionError) as info:
        qpay.pay_query(TOKEN)
    assert info.value.retryable is True
    assert str(info.value).startswith("OrderPayQuery: Nonce connection failed")
    assert_no_secret(str(info.value), repr(info.value), extra=(TOKEN,))
    (record,) = records
    assert (record.outcome, record.http_status, record.key) == ("transport_error", None, "8630ccdd…")


@pytest.mark.parametrize(
    ("nonce_reply", "error"),
    [
        (Reply(500, b"down", "text/plain"), BankHTTPError),
        (Reply(200, b"not json", "text/plain"), NotAnEnvelope),
        (json_reply({"Status": "F"}), MalformedReply),
        (json_reply({"Nonce": ""}), MalformedReply),
        (json_reply({"Nonce": "bad\nnonce"}), MalformedReply),
    ],
    ids=["500", "garbage", "no nonce", "empty nonce", "control chars"],
)
def test_a_failing_nonce_call_stops_before_any_order_is_sent(
    nonce_reply: Reply,
    error: type[QPayError],
    client: QPayClient,
    bank: StubBank,
    records: list[BankCallRecord],
) -> None:
    bank.on_nonce = lambda: nonce_reply
    with pytest.raises(error, match=r"^OrderPayQuery: Nonce"):
        client.pay_query(TOKEN)
    assert [s.path.rsplit("/", 1)[1] for s in bank.seen] == ["Nonce"]
    assert len(records) == 1


def test_a_genuine_reply_for_another_order_is_refused(client: QPayClient, bank: StubBank) -> None:
    bank.on_order = _bind(bank, _sealed_with(OrderNo="ATM20249999999"))
    with pytest.raises(MalformedReply, match="different OrderNo"):
        _create(client)


def test_a_genuine_reply_for_another_pay_token_is_refused(client: QPayClient, bank: StubBank) -> None:
    bank.on_order = _bind(bank, _sealed_with(PayToken="f" * 64))
    with pytest.raises(MalformedReply, match="different PayToken") as info:
        client.pay_query(TOKEN)
    assert_no_secret(str(info.value), extra=(TOKEN, "f" * 64))


def test_reply_envelope_for_another_service_is_refused(client: QPayClient, bank: StubBank) -> None:
    def reply(service: str, request: dict[str, Any]) -> Reply:
        return bank.sealed("OrderCreate", bank.default_inner(service, request))

    bank.on_order = reply
    with pytest.raises(MalformedReply, match="APIService OrderCreate"):
        client.pay_query(TOKEN)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"Amount": "12.5"}, "Amount is not a whole amount"),
        ({"Amount": None}, "Amount is not a whole amount"),
        ({"Amount": True}, "Amount is not an amount"),
        ({"ATMParam": {}}, "lacks ATMParam.AtmPayNo"),
        ({"ATMParam": "99922530000123"}, "ATMParam is not an object"),
        ({"TSNo": ""}, "lacks TSNo"),
    ],
)
def test_signed_create_reply_with_unusable_fields_is_malformed(
    change: dict[str, Any], message: str, client: QPayClient, bank: StubBank, records: list[BankCallRecord]
) -> None:
    bank.on_order = _bind(bank, _sealed_with(**change))
    with pytest.raises(MalformedReply, match=message):
        _create(client)
    assert [r.outcome for r in records] == ["protocol_error"]


def test_signed_query_reply_with_a_bad_row_is_malformed(client: QPayClient, bank: StubBank) -> None:
    bank.on_order = _bind(bank, _sealed_with(OrderList=[{"OrderNo": "A1", "Amount": "abc"}]))
    with pytest.raises(MalformedReply, match=r"OrderList\[0\]\.Amount"):
        client.query_orders(OrderQueryRequest(order_no="A1"))


def _bind(bank: StubBank, behaviour: Behaviour) -> Callable[[str, dict[str, Any]], Reply]:
    return lambda service, request: behaviour(bank, service, request)


def test_a_bank_dripping_its_reply_meets_one_total_deadline(records: list[BankCallRecord]) -> None:
    # Given a bank that sends its headers, then one byte every 0.2 s: each read is well within the
    # read timeout (0.5 s), so only a deadline for the whole call can stop it
    import socketserver
    import threading
    import time

    class Drip(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
            body = b'{"Nonce":"' + b"N" * 60 + b'"}'
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             + f"Content-Length: {len(body)}\r\n\r\n".encode())
            for byte in body:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.2)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Drip)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        qpay = QPayClient(make_settings(f"http://127.0.0.1:{server.server_address[1]}/api/"),
                          observer=records.append)
        started = time.monotonic()
        # When a call is made (connect 1 s + read 0.5 s: the call's whole deadline is 1.5 s)
        with pytest.raises(BankTimeout, match="deadline"):
            qpay.pay_query(TOKEN)
        # Then it ends at the deadline, not after the 13 s the drip would take
        assert time.monotonic() - started < 3.0
        assert records[0].outcome == "transport_error"
    finally:
        server.shutdown()
        server.server_close()


def test_a_parser_surprise_is_a_malformed_reply_never_recorded_ok(
    client: QPayClient, records: list[BankCallRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a verified reply whose content makes the typed parser fail in a way nobody planned for
    from core.sinopac import results

    def explode(inner: dict[str, Any]) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(results, "to_pay_query_result", explode)
    # When it is opened, then it is a malformed reply, and the record says so
    with pytest.raises(MalformedReply, match="does not parse"):
        client.pay_query(TOKEN)
    (record,) = records
    assert record.outcome == "protocol_error"


def test_every_request_waits_for_the_budget_and_the_wait_is_not_the_banks_time(
    bank: StubBank, records: list[BankCallRecord]
) -> None:
    # Given a budget that makes every request wait 1 s (the call's own deadline is 1.5 s)
    import time

    class SlowBudget:
        calls = 0

        def acquire(self) -> float:
            SlowBudget.calls += 1
            time.sleep(1.0)
            return 1.0

    qpay = QPayClient(make_settings(bank.base_url), observer=records.append, budget=SlowBudget())
    # When a call is made, then both its requests waited for a slot, and it still succeeds
    qpay.pay_query(TOKEN)
    assert SlowBudget.calls == 2
    # And the record's duration is the bank's time, not the wait
    (record,) = records
    assert record.outcome == "ok"
    assert record.duration_ms < 1000
