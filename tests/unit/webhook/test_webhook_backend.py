"""POST /qpay/backend through the real app: what is acknowledged, stored and enqueued."""

from __future__ import annotations

import json
from datetime import timedelta
from io import BytesIO

import pytest
from flask.testing import FlaskClient
from sqlalchemy import update

from core.db import transaction
from core.models import PayToken
from core.services.due import due_tokens
from tests.unit.webhook.helpers import (
    SHOP,
    TOKEN,
    FakeEnqueuer,
    count_tokens,
    refusing_database,
    token_row,
)

BACKEND = "/qpay/backend"
BAD_TOKEN = "PayToken must be 1-128 characters of 0-9 A-Z a-z _ -"


def post_json(client: FlaskClient, body: object, **kw: object):  # type: ignore[no-untyped-def]
    return client.post(BACKEND, data=json.dumps(body), content_type="application/json", **kw)


def test_valid_callback_is_acknowledged_stored_and_enqueued(client, db_url, enqueuer):
    # given a valid callback for our shop
    # when the bank posts it
    resp = post_json(client, {"ShopNo": SHOP, "PayToken": TOKEN})
    # then the bank gets exactly {"Status":"S"}, the token is stored once and its resolution queued
    assert resp.status_code == 200
    assert resp.data == b'{"Status":"S"}'
    assert resp.mimetype == "application/json"
    row = token_row(db_url, TOKEN)
    assert row is not None
    assert (row.shop_no, row.source, row.receipts) == (SHOP, "backend", 1)
    assert enqueuer.sent == [row.id]


def test_freshly_enqueued_token_waits_the_sweep_grace(client, db_url, enqueuer):
    # given a callback acknowledged and enqueued (one transaction stamps it queued)
    post_json(client, {"ShopNo": SHOP, "PayToken": TOKEN})
    row = token_row(db_url, TOKEN)
    assert row is not None
    assert enqueuer.sent == [row.id]
    assert row.last_enqueued_at == row.last_received_at
    # when the sweep looks for stragglers, then it leaves the token alone until the grace has passed
    grace = timedelta(seconds=120)
    with transaction(db_url) as s:
        early = due_tokens(s, now=row.last_received_at + grace - timedelta(seconds=1), grace=grace, limit=10)
        late = due_tokens(s, now=row.last_received_at + grace, grace=grace, limit=10)
    assert early == []
    assert late == [row.id]


def test_a_receipt_of_an_already_queued_token_does_not_queue_it_again(client, db_url, enqueuer):
    # given a token received and queued
    post_json(client, {"ShopNo": SHOP, "PayToken": TOKEN})
    # when it arrives again (the bank resends, the browser returns) while it is queued
    for _ in range(3):
        resp = post_json(client, {"ShopNo": SHOP, "PayToken": TOKEN})
        assert resp.data == b'{"Status":"S"}'
    # then it is counted and acknowledged, and queued once
    row = token_row(db_url, TOKEN)
    assert row is not None
    assert row.receipts == 4
    assert enqueuer.sent == [row.id]
    assert count_tokens(db_url) == 1
    # and once the grace has passed since it was queued (the task was lost), a receipt queues it again
    with transaction(db_url) as s:
        s.execute(update(PayToken).values(last_enqueued_at=row.last_enqueued_at - timedelta(seconds=121)))
    post_json(client, {"ShopNo": SHOP, "PayToken": TOKEN})
    assert enqueuer.sent == [row.id, row.id]


def test_a_receipt_whose_publish_failed_leaves_the_next_receipt_to_queue_the_token(client, db_url, enqueuer):
    # given a first receipt while the broker was down
    enqueuer.up = False
    post_json(client, {"ShopNo": SHOP, "PayToken": TOKEN})
    # when the bank resends it with the broker back
    enqueuer.up = True
    post_json(client, {"ShopNo": SHOP, "PayToken": TOKEN})
    # then that resend queues it
    row = token_row(db_url, TOKEN)
    assert row is not None
    assert enqueuer.sent == [row.id]


def test_duplicate_of_resolved_token_is_acknowledged_but_not_enqueued(client, db_url, enqueuer):
    post_json(client, {"ShopNo": SHOP, "PayToken": TOKEN})
    with transaction(db_url) as s:
        s.execute(update(PayToken).values(state="resolved"))
    resp = post_json(client, {"ShopNo": SHOP, "PayToken": TOKEN})
    assert resp.data == b'{"Status":"S"}'
    assert len(enqueuer.sent) == 1


def test_broker_down_still_acknowledges_and_leaves_token_for_the_sweep(client, db_url, enqueuer):
    enqueuer.up = False
    resp = post_json(client, {"ShopNo": SHOP, "PayToken": TOKEN})
    assert resp.data == b'{"Status":"S"}'
    row = token_row(db_url, TOKEN)
    assert row is not None
    assert row.state == "received"
    assert row.last_enqueued_at is None  # not queued after all: the bank's resend will queue it
    with transaction(db_url) as s:  # and the sweep re-sends it once the grace has passed
        later = row.last_received_at + timedelta(seconds=120)
        assert due_tokens(s, now=later, grace=120, limit=10) == [row.id]


def test_database_unavailable_answers_503_never_s(app, db_url, enqueuer):
    # given a database that refuses connections
    app.extensions["qpay"].unit_of_work = refusing_database
    # when the bank posts a valid callback
    resp = post_json(app.test_client(), {"ShopNo": SHOP, "PayToken": TOKEN})
    # then it is told to come back (not S) and nothing is enqueued
    assert resp.status_code == 503
    assert resp.get_json() == {"Status": "F", "error": "database unavailable"}
    assert enqueuer.sent == []


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "application/json; charset=utf-8", "application/octet-stream"])
def test_json_body_is_accepted_whatever_the_content_type(client, db_url, content_type):
    body = json.dumps({"ShopNo": SHOP, "PayToken": TOKEN}).encode()
    headers = {"Content-Type": content_type} if content_type else {}
    resp = client.post(BACKEND, data=body, headers=headers)
    assert resp.data == b'{"Status":"S"}'
    assert count_tokens(db_url) == 1


def test_urlencoded_form_is_accepted_when_declared(client, db_url):
    resp = client.post(BACKEND, data={"ShopNo": SHOP, "PayToken": TOKEN})
    assert resp.data == b'{"Status":"S"}'
    assert token_row(db_url, TOKEN) is not None


def test_utf8_bom_is_tolerated(client, db_url):
    body = b"\xef\xbb\xbf" + json.dumps({"ShopNo": SHOP, "PayToken": TOKEN}).encode()
    assert client.post(BACKEND, data=body).data == b'{"Status":"S"}'


def test_extra_fields_are_tolerated(client, db_url):
    resp = post_json(client, {"ShopNo": SHOP, "PayToken": TOKEN, "Extra": [1, 2], "Sign": "x"})
    assert resp.data == b'{"Status":"S"}'
    assert count_tokens(db_url) == 1


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", "body is empty; expected a JSON object"),
        (b"{not json", "body is not valid JSON"),
        (b'{"ShopNo": "NA0001_001", "PayToken": "abc"', "body is not valid JSON"),
        (b"\xff\xfe{}", "body is not valid UTF-8"),
        (b'{"ShopNo": "NA0001_001", "PayToken": "ab\xc3"}', "body is not valid UTF-8"),
        (b"[1, 2]", "body must be a JSON object"),
        (b'"text"', "body must be a JSON object"),
        (b"null", "body must be a JSON object"),
        (b'{"ShopNo": NaN, "PayToken": "abc"}', "body is not valid JSON"),
        (b"[" * 2000 + b"]" * 2000, "body is not valid JSON"),
    ],
)
def test_malformed_body_is_rejected_with_400_and_nothing_stored(client, db_url, enqueuer, body, error):
    resp = client.post(BACKEND, data=body, content_type="application/json")
    assert resp.status_code == 400
    assert resp.get_json() == {"Status": "F", "error": error}
    assert count_tokens(db_url) == 0
    assert enqueuer.sent == []


@pytest.mark.parametrize(
    ("body", "field", "error"),
    [
        ({"PayToken": TOKEN}, "ShopNo", "ShopNo is missing"),
        ({"ShopNo": SHOP}, "PayToken", "PayToken is missing"),
        ({"ShopNo": 1, "PayToken": TOKEN}, "ShopNo", "ShopNo must be a string"),
        ({"ShopNo": SHOP, "PayToken": 12345}, "PayToken", "PayToken must be a string"),
        ({"ShopNo": SHOP, "PayToken": None}, "PayToken", "PayToken is missing"),
        ({"ShopNo": SHOP, "PayToken": ["a"]}, "PayToken", "PayToken must be a string"),
        ({"ShopNo": SHOP, "PayToken": True}, "PayToken", "PayToken must be a string"),
        ({"ShopNo": "NA9999_001", "PayToken": TOKEN}, "ShopNo", "ShopNo is not a shop configured here"),
        ({"ShopNo": SHOP.lower(), "PayToken": TOKEN}, "ShopNo", "ShopNo is not a shop configured here"),
        ({"ShopNo": SHOP, "PayToken": ""}, "PayToken", BAD_TOKEN),
        ({"ShopNo": SHOP, "PayToken": "a" * 129}, "PayToken", BAD_TOKEN),
        ({"ShopNo": SHOP, "PayToken": "abc\n"}, "PayToken", BAD_TOKEN),
        ({"ShopNo": SHOP, "PayToken": "abc def"}, "PayToken", BAD_TOKEN),
        ({"ShopNo": SHOP, "PayToken": "<script>"}, "PayToken", BAD_TOKEN),
        ({"ShopNo": SHOP, "PayToken": "ａｂｃ"}, "PayToken", BAD_TOKEN),
    ],
)
def test_invalid_fields_are_rejected_naming_the_field(client, db_url, enqueuer, body, field, error):
    resp = post_json(client, body)
    assert resp.status_code == 400
    assert resp.get_json() == {"Status": "F", "error": error, "field": field}
    assert count_tokens(db_url) == 0
    assert enqueuer.sent == []


def test_body_over_4_kib_is_rejected_with_413(client, db_url):
    body = json.dumps({"ShopNo": SHOP, "PayToken": TOKEN, "pad": "x" * 5000}).encode()
    resp = client.post(BACKEND, data=body, content_type="application/json")
    assert resp.status_code == 413
    assert resp.get_json() == {"Status": "F", "error": "body larger than 4096 bytes"}
    assert count_tokens(db_url) == 0


def test_body_of_exactly_4_kib_is_accepted(client, db_url):
    body = json.dumps({"ShopNo": SHOP, "PayToken": TOKEN, "pad": ""}).encode()
    body = body[:-2] + b"x" * (4096 - len(body)) + b'"}'
    assert len(body) == 4096
    assert client.post(BACKEND, data=body).data == b'{"Status":"S"}'


def test_chunked_body_over_4_kib_is_rejected_without_content_length(client, db_url):
    # given a chunked body (no Content-Length) that is valid JSON but 10 KiB long
    body = json.dumps({"ShopNo": SHOP, "PayToken": TOKEN, "pad": "x" * 10_000}).encode()
    stream = BytesIO(body)
    resp = client.post(BACKEND, input_stream=stream, content_type="application/json",
                       environ_overrides={"wsgi.input_terminated": True})
    assert resp.status_code == 413
    assert count_tokens(db_url) == 0
    assert stream.tell() <= 4097  # the rest was never read


def test_chunked_small_body_is_accepted(client, db_url):
    body = json.dumps({"ShopNo": SHOP, "PayToken": TOKEN}).encode()
    resp = client.post(BACKEND, input_stream=BytesIO(body), content_type="application/json",
                       environ_overrides={"wsgi.input_terminated": True})
    assert resp.data == b'{"Status":"S"}'


def test_lying_small_content_length_cannot_smuggle_a_larger_body(client, db_url):
    # given Content-Length 20 but a longer body: only 20 bytes are read, which is not valid JSON
    body = json.dumps({"ShopNo": SHOP, "PayToken": TOKEN}).encode()
    resp = client.post(BACKEND, input_stream=BytesIO(body), environ_overrides={"CONTENT_LENGTH": "20"})
    assert resp.status_code == 400
    assert count_tokens(db_url) == 0


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_wrong_method_is_405_json(client, method):
    resp = client.open(BACKEND, method=method)
    assert resp.status_code == 405
    assert resp.get_json()["Status"] == "F"
    assert "POST" in resp.headers["Allow"]


def test_unknown_path_is_404_json(client):
    resp = client.get("/nope")
    assert resp.status_code == 404
    assert resp.get_json()["Status"] == "F"


def test_request_id_is_echoed_or_generated(client):
    given = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["X-Request-ID"] == "abc-123"
    made = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert made.headers["X-Request-ID"] != "bad id with spaces"
    assert len(made.headers["X-Request-ID"]) == 32


def test_unexpected_error_is_json_500_without_traceback(app, enqueuer: FakeEnqueuer):
    def boom(token_id: int) -> bool:
        raise RuntimeError("secret detail")

    enqueuer.send_resolve = boom  # type: ignore[method-assign]
    resp = post_json(app.test_client(), {"ShopNo": SHOP, "PayToken": TOKEN})
    assert resp.status_code == 500
    assert resp.get_json() == {"Status": "F", "error": "internal error"}


@pytest.mark.parametrize("token", ["a", "A_b-9", "-_-", "Z" * 128])
def test_tokens_of_the_documented_alphabet_are_accepted(client, db_url, token):
    resp = post_json(client, {"ShopNo": SHOP, "PayToken": token})
    assert resp.data == b'{"Status":"S"}'
    assert token_row(db_url, token) is not None
