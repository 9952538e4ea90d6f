"""Scenario 7: a corpus of bad input against the receivers. Every piece gets a 4xx, nothing is stored,
the server stays healthy, and good callbacks keep settling while bad ones arrive."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import pytest
import requests

from tests.faults.conftest import Record
from tests.support.poll import wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.faults

SHOP = "__SHOP__"  # replaced by the stack's ShopNo
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"

CORPUS: dict[str, tuple[str, bytes, str]] = {
    "malformed json": ("/qpay/backend", b'{"ShopNo": "__SHOP__", "PayToken": ', JSON),
    "json array": ("/qpay/backend", b'["__SHOP__", "abc"]', JSON),
    "empty body": ("/qpay/backend", b"", JSON),
    "deep nesting": ("/qpay/backend", b"[" * 100_000 + b"]" * 100_000, JSON),
    "deep nesting in field": ("/qpay/backend", b'{"ShopNo":"__SHOP__","PayToken":' + b'{"a":' * 5000 + b"1"
                              + b"}" * 5001, JSON),
    "huge integer token": ("/qpay/backend", b'{"ShopNo":"__SHOP__","PayToken":' + b"9" * 5000 + b"}", JSON),
    "huge float token": ("/qpay/backend", b'{"ShopNo":"__SHOP__","PayToken":1e99999}', JSON),
    "NaN token": ("/qpay/backend", b'{"ShopNo":"__SHOP__","PayToken":NaN}', JSON),
    "invalid utf-8": ("/qpay/backend", b'{"ShopNo":"__SHOP__","PayToken":"ab\xff\xfe\xc3\x28"}', JSON),
    "lone surrogate": ("/qpay/backend", b'{"ShopNo":"__SHOP__","PayToken":"\\ud800abc"}', JSON),
    "nul in token": ("/qpay/backend", b'{"ShopNo":"__SHOP__","PayToken":"abc\\u0000def"}', JSON),
    "sql in token": ("/qpay/backend", b'{"ShopNo":"__SHOP__","PayToken":"x\' OR 1=1; --"}', JSON),
    "token too long": ("/qpay/backend", b'{"ShopNo":"__SHOP__","PayToken":"' + b"a" * 129 + b'"}', JSON),
    "token is a list": ("/qpay/backend", b'{"ShopNo":"__SHOP__","PayToken":["abc"]}', JSON),
    "shop missing": ("/qpay/backend", b'{"PayToken":"abc123"}', JSON),
    "1 MB body": ("/qpay/backend", b'{"ShopNo":"__SHOP__","PayToken":"' + b"a" * 1_048_576 + b'"}', JSON),
    "form twice the token": ("/qpay/return", b"ShopNo=__SHOP__&PayToken=abc&PayToken=def", FORM),
    "form invalid utf-8": ("/qpay/return", b"ShopNo=__SHOP__&PayToken=%ff%fe", FORM),
    "form 1 MB": ("/qpay/return", b"ShopNo=__SHOP__&PayToken=" + b"a" * 1_048_576, FORM),
}


def send(stack: Stack, path: str, body: bytes, content_type: str) -> requests.Response:
    payload = body.replace(b"__SHOP__", stack.keys.shop_no.encode())
    return requests.post(stack.web_url + path, data=payload, headers={"Content-Type": content_type},
                         timeout=15, allow_redirects=False)


def stored_tokens(stack: Stack) -> set[str]:
    return {row.pay_token for row in stack.pay_tokens()}


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_bad_input_is_refused_with_4xx_and_nothing_is_stored(stack: Stack, case: str) -> None:
    # Given the running stack and the tokens it holds
    path, body, content_type = CORPUS[case]
    before = stored_tokens(stack)

    # When the bad input arrives
    resp = send(stack, path, body, content_type)

    # Then it is refused with a client error, nothing new is stored, and the server is healthy
    assert 400 <= resp.status_code < 500, f"{case}: {resp.status_code} {resp.text[:200]}"
    assert stored_tokens(stack) == before
    assert stack.healthy()


def trickle(url: str, body: bytes, pause: float) -> bytes:
    """Send a request whose body arrives one byte at a time; return what the server answered."""
    parsed = urlparse(url)
    head = (f"POST {parsed.path} HTTP/1.1\r\nHost: {parsed.netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection((parsed.hostname, parsed.port), timeout=30) as sock:
        sock.sendall(head)
        try:
            for byte in body:
                sock.sendall(bytes([byte]))
                time.sleep(pause)  # the fault itself: a client that is slow on purpose
        except OSError:
            pass  # the server gave up on us first: fine
        try:
            return sock.recv(4096)
        except OSError:
            return b""


def test_slow_bodies_do_not_stop_good_callbacks(stack: Stack, ledger: Record) -> None:
    # Given paid orders whose callbacks will arrive while slow clients hold connections open
    orders = stack.create_orders(4, amount_twd=710)
    bad = b'{"ShopNo":"' + stack.keys.shop_no.encode() + b'","PayToken":"not a token!"}'
    before = stored_tokens(stack)
    answers: list[bytes] = []
    url = stack.web_url + "/qpay/backend"
    slow = [threading.Thread(target=lambda: answers.append(trickle(url, bad, 0.05))) for _ in range(3)]

    # When three clients trickle bad bodies in while the customers pay
    for thread in slow:
        thread.start()
    for order_no in orders:
        stack.pay(order_no)
    finals = stack.wait_final(orders, timeout=45)
    for thread in slow:
        thread.join(30)

    # Then every payment settled, the slow bodies were refused, and only real tokens were stored
    assert set(finals.values()) == {"paid"}
    assert len(answers) == 3
    assert all(a == b"" or a.split(b" ", 2)[1].startswith(b"4") for a in answers), answers
    new = stored_tokens(stack) - before
    assert new == {stack.pay_token_of(n) for n in orders}
    ledger(stack, "bad input: slow bodies + good callbacks", dict.fromkeys(orders, "paid"))


def test_a_burst_of_garbage_leaves_good_callbacks_answered(stack: Stack, ledger: Record) -> None:
    # Given a paid order and the whole corpus fired at once, four times over
    order_no = stack.create_order(720)
    cases = sorted(CORPUS) * 4

    # When the garbage arrives concurrently with the bank's real callback
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(send, stack, *CORPUS[c]) for c in cases]
        stack.pay(order_no)
        codes = [f.result().status_code for f in futures]

    # Then every piece got a 4xx, and the real payment settled once
    assert all(400 <= code < 500 for code in codes), codes
    wait_for(stack.healthy, timeout=10, message="web healthy")
    assert stack.wait_final([order_no], timeout=30) == {order_no: "paid"}
    ledger(stack, "bad input: burst + good callback", {order_no: "paid"})


# A chunked body whose framing is broken: the server cannot even read it (issue 13, item 7).
BROKEN_CHUNKS: dict[str, bytes] = {
    "bad chunk size": b"zz\r\n__BODY__\r\n0\r\n\r\n",
    "chunk data without CRLF": b"__LEN__\r\n__BODY__XX0\r\n\r\n",
    "Content-Length trailer": b"__LEN__\r\n__BODY__\r\n0\r\nContent-Length: 5\r\n\r\n",
}


def raw_chunked(url: str, path: str, chunks: bytes, request_id: str, *, bearer: str = "") -> bytes:
    """POST a hand-framed chunked body over a raw socket; the whole answer, up to the server's close."""
    parsed = urlparse(url)
    head = (f"POST {path} HTTP/1.1\r\nHost: {parsed.netloc}\r\nContent-Type: application/json\r\n"
            f"Transfer-Encoding: chunked\r\nX-Request-ID: {request_id}\r\n"
            + (f"Authorization: Bearer {bearer}\r\n" if bearer else "") + "\r\n").encode()
    out = b""
    with socket.create_connection((parsed.hostname, parsed.port), timeout=15) as sock:
        sock.sendall(head + chunks)
        while (data := sock.recv(65536)):
            out += data  # the server closes: after a broken body the next request's start is unknown
    return out


@pytest.mark.parametrize("path", ["/qpay/backend", "/qpay/return", "/api/orders"])
@pytest.mark.parametrize("case", sorted(BROKEN_CHUNKS))
def test_a_malformed_chunked_body_is_a_400_logged_at_info(stack: Stack, path: str, case: str) -> None:
    # Given a body that would be a valid request if its chunked framing were not broken
    if path == "/api/orders":
        body = json.dumps({"amount": 500, "pay_type": "A", "product_name": "chunked"}).encode()
    else:
        body = json.dumps({"ShopNo": stack.keys.shop_no, "PayToken": uuid.uuid4().hex}).encode()
    chunks = BROKEN_CHUNKS[case].replace(b"__LEN__", b"%x" % len(body)).replace(b"__BODY__", body)
    request_id = f"chunked-{uuid.uuid4().hex}"
    before_tokens, before_orders = stored_tokens(stack), stack.count("orders")

    # When it arrives at the real app under gunicorn
    answer = raw_chunked(stack.web_url, path, chunks, request_id, bearer=stack.api_token)

    # Then it is a 400 (the return page's own 400 page there), with the security headers, nothing is
    # stored, and the web logged it at INFO: no ERROR, no traceback
    head, _, page = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    assert status_line.split(" ")[1] == "400", answer[:500]
    assert headers["x-content-type-options"] == "nosniff"
    if path == "/qpay/return":
        assert headers["content-type"].startswith("text/html")
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert b"body could not be read" in page
    else:
        assert json.loads(page)["error"].startswith("body could not be read")
    assert stored_tokens(stack) == before_tokens
    assert stack.count("orders") == before_orders
    lines = [json.loads(ln) for ln in stack.procs["web"].log().splitlines()
             if request_id in ln and ln.startswith("{")]
    assert any(ln["msg"] == "unreadable request body" and ln["level"] == "INFO" for ln in lines), lines
    assert all(ln["level"] in {"INFO", "DEBUG"} and "exc" not in ln for ln in lines), lines
    assert stack.healthy()
