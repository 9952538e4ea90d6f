"""A key change at the bank: replies signed with the other key set are verified with it (and say so),
and a request the bank refuses under the active set is sent again under the other one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from core.sinopac import calls as calls_module
from core.sinopac.client import QPayClient
from core.sinopac.crypto import hash_id
from core.sinopac.errors import BankProtocolError, EnvelopeRefused, SignatureMismatch
from core.sinopac.messages import OrderQueryRequest
from core.sinopac.types import BankCallRecord

from .bankstub import StubBank
from .conftest import HASH_ID, KEY_ID, make_settings

NEXT = {"QPAY_NEXT_HASH_A1": "1111111111111111", "QPAY_NEXT_HASH_A2": "2222222222222222",
        "QPAY_NEXT_HASH_B1": "3333333333333333", "QPAY_NEXT_HASH_B2": "4444444444444444",
        "QPAY_NEXT_KEY_ID": "next-key-id"}
NEXT_HASH_ID = hash_id("1111111111111111", "2222222222222222", "3333333333333333", "4444444444444444")


@pytest.fixture(autouse=True)
def _fresh_process() -> Iterator[None]:
    """What the bank refused is remembered per process: every test starts as a fresh one."""
    calls_module._REFUSED.clear()
    yield
    calls_module._REFUSED.clear()


def _client(bank: StubBank, records: list[BankCallRecord], **env: str) -> QPayClient:
    return QPayClient(make_settings(bank.base_url, **env), observer=records.append)


def test_a_reply_signed_with_the_next_set_verifies_and_the_record_says_which_set(bank: StubBank) -> None:
    signer = StubBank(hash_id=NEXT_HASH_ID)  # the bank has switched: it signs replies with the new keys
    bank.on_order = lambda service, request: signer.sealed(service, signer.default_inner(service, request))
    records: list[BankCallRecord] = []
    with _client(bank, records, **NEXT) as client:
        result = client.pay_query("a" * 64)
    assert result.status == "S"
    assert [(r.outcome, r.key_set, r.shop_no) for r in records] == [("ok", "next", "NA0001_001")]
    # Requests are still signed with the active set.
    assert {seen.headers.get("X-KeyID") for seen in bank.seen} == {KEY_ID}


def test_without_a_next_set_the_same_reply_is_untrusted(bank: StubBank) -> None:
    signer = StubBank(hash_id=NEXT_HASH_ID)
    bank.on_order = lambda service, request: signer.sealed(service, signer.default_inner(service, request))
    records: list[BankCallRecord] = []
    with _client(bank, records) as client, pytest.raises(BankProtocolError):
        client.pay_query("a" * 64)
    assert [(r.outcome, r.key_set) for r in records] == [("protocol_error", "")]


def test_a_reply_no_set_verifies_stays_untrusted(bank: StubBank) -> None:
    bank.on_order = lambda service, request: bank.sealed(service, bank.default_inner(service, request),
                                                         sign="0" * 64)
    records: list[BankCallRecord] = []
    with _client(bank, records, **NEXT) as client, pytest.raises(SignatureMismatch):
        client.pay_query("a" * 64)


def test_a_request_refused_under_the_active_set_is_sent_again_under_the_next(bank: StubBank) -> None:
    bank.hash_id = NEXT_HASH_ID  # the bank takes only the new keys now
    records: list[BankCallRecord] = []
    with _client(bank, records, **NEXT) as client:
        result = client.query_orders(OrderQueryRequest(order_no="A1"))
    assert result.orders[0].order_no == "A1"
    order_calls = [seen.headers.get("X-KeyID") for seen in bank.seen if seen.path.endswith("/Order")]
    assert order_calls == [KEY_ID, "next-key-id"]
    assert [(r.outcome, r.key_set) for r in records] == [("ok", "next")]

    # The next call, by any client of this process with these keys, goes to the set the bank took.
    bank.seen.clear()
    with _client(bank, records, **NEXT) as client:
        client.query_orders(OrderQueryRequest(order_no="A2"))
    assert [seen.headers.get("X-KeyID") for seen in bank.seen] == ["next-key-id", "next-key-id"]

    # And should the bank refuse that one later (the change undone), the active set is tried again.
    bank.hash_id = HASH_ID
    bank.seen.clear()
    with _client(bank, records, **NEXT) as client:
        client.query_orders(OrderQueryRequest(order_no="A3"))
    order_calls = [seen.headers.get("X-KeyID") for seen in bank.seen if seen.path.endswith("/Order")]
    assert order_calls == ["next-key-id", KEY_ID]


def test_a_refusal_with_no_other_set_is_an_envelope_refusal(bank: StubBank) -> None:
    bank.hash_id = NEXT_HASH_ID
    records: list[BankCallRecord] = []
    with _client(bank, records) as client, pytest.raises(EnvelopeRefused):
        client.query_orders(OrderQueryRequest(order_no="A1"))


def test_with_key_set_signs_with_the_chosen_set(bank: StubBank) -> None:
    bank.hash_id = NEXT_HASH_ID
    records: list[BankCallRecord] = []
    with _client(bank, records, **NEXT) as client:
        twin = client.with_key_set("next")
        twin.query_orders(OrderQueryRequest(order_no="A1"))
        assert client.with_key_set("active").nonce()
    assert [seen.headers.get("X-KeyID") for seen in bank.seen] == ["next-key-id", "next-key-id", KEY_ID]
    bank.hash_id = HASH_ID  # before the change at the bank: the next set is refused, not replaced
    with _client(bank, records, **NEXT) as client, pytest.raises(EnvelopeRefused):
        client.with_key_set("next").query_orders(OrderQueryRequest(order_no="A1"))
    with pytest.raises(ValueError, match="no next key set"):
        QPayClient(make_settings(bank.base_url)).with_key_set("next")


def test_errors_and_records_never_carry_either_key_set(bank: StubBank) -> None:
    bank.on_order = lambda service, request: bank.sealed(service, {}, sign="0" * 64)
    records: list[BankCallRecord] = []
    with _client(bank, records, **NEXT) as client, pytest.raises(SignatureMismatch) as info:
        client.pay_query("a" * 64)
    text = str(info.value) + repr(client) + "".join(repr(r) for r in records)
    secrets: list[Any] = [*NEXT.values(), NEXT_HASH_ID, HASH_ID, KEY_ID]
    assert not [s for s in secrets if s in text]
