"""The acknowledgement rules against real gunicorn, PostgreSQL and Redis, with each one stopped in turn."""

from __future__ import annotations

import json
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest
import redis
import requests

from tests.integration.webhook.conftest import Stack
from tests.support.poll import wait_for

pytestmark = pytest.mark.integration

SHOP = "NA0001_001"


def new_token() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex


def callback(stack: Stack, token: str, timeout: float = 10) -> requests.Response:
    body = {"ShopNo": SHOP, "PayToken": token}
    return requests.post(f"{stack.base}/qpay/backend", json=body, timeout=timeout)


def token_row(stack: Stack, token: str) -> tuple[int, int, str] | None:
    """(id, receipts, state) of a stored token, read straight from PostgreSQL."""
    conn = psycopg2.connect(stack.db_url.replace("postgresql+psycopg2://", "postgresql://"),
                            connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id, receipts, state FROM pay_tokens WHERE pay_token = %s", (token,))
            row = cur.fetchone()
            return (row[0], row[1], row[2]) if row else None
    finally:
        conn.close()


def stored(stack: Stack, token: str) -> tuple[int, str] | None:
    row = token_row(stack, token)
    return (row[1], row[2]) if row else None


def queued_ids(stack: Stack) -> list[int]:
    client = redis.Redis.from_url(stack.redis.url)
    return [json.loads(json.loads(m)["headers"]["argsrepr"])[0] for m in client.lrange("callbacks", 0, -1)]


def test_callback_is_acknowledged_only_after_commit_and_queued(stack: Stack):
    token = new_token()
    resp = callback(stack, token)
    assert resp.status_code == 200
    assert resp.content == b'{"Status":"S"}'
    row = token_row(stack, token)
    assert row is not None
    assert row[1:] == (1, "received")
    assert row[0] in queued_ids(stack)
    assert resp.headers["X-Request-ID"]


def test_database_stopped_answers_503_and_recovers(stack: Stack):
    # given PostgreSQL is down
    stack.pg.stop()
    token = new_token()
    try:
        # when the bank posts a callback, then it is never told S
        resp = callback(stack, token)
        assert resp.status_code == 503
        assert resp.json() == {"Status": "F", "error": "database unavailable"}
        ready = requests.get(f"{stack.base}/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["failed"] == ["database"]
    finally:
        stack.pg.start()
    # and once it is back, the bank's resend is acknowledged and stored
    resp = wait_for(lambda: (r := callback(stack, token)).status_code == 200 and r, timeout=30,
                    message="callbacks to succeed after PostgreSQL restarts")
    assert resp.content == b'{"Status":"S"}'
    assert stored(stack, token) == (1, "received")
    # and every later callback is acknowledged, whichever web process (and pooled connection) takes
    # it: a connection that died with the restart is replaced without a 503
    with ThreadPoolExecutor(8) as pool:  # at once, so both gunicorn workers take some
        later = list(pool.map(lambda _: callback(stack, new_token()), range(16)))
    assert [r.content for r in later] == [b'{"Status":"S"}'] * 16


def test_redis_stopped_still_acknowledges_quickly_and_keeps_the_token(stack: Stack):
    # given Redis is down
    stack.redis.stop()
    token = new_token()
    try:
        started = time.monotonic()
        resp = callback(stack, token)
        elapsed = time.monotonic() - started
        # then the bank still gets S, fast, and the token is durable for the sweep
        assert resp.content == b'{"Status":"S"}'
        assert elapsed < 5.0
        assert stored(stack, token) == (1, "received")
        ready = requests.get(f"{stack.base}/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["failed"] == ["broker"]
    finally:
        stack.redis.start()
    # and with Redis back, a resend is enqueued again
    wait_for(lambda: requests.get(f"{stack.base}/readyz", timeout=5).status_code == 200, timeout=30,
             message="readyz after Redis restarts")
    assert callback(stack, token).content == b'{"Status":"S"}'
    row = token_row(stack, token)
    assert row is not None
    assert row[0] in queued_ids(stack)


def test_chunked_oversize_body_is_413_on_the_real_server(stack: Stack):
    host, port = stack.base.removeprefix("http://").split(":")
    payload = json.dumps({"ShopNo": SHOP, "PayToken": new_token(), "pad": "x" * 10_000}).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /qpay/backend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(payload), 1000):
            chunk = payload[i:i + 1000]
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
        reply = b""
        while b"\r\n\r\n" not in reply:
            data = sock.recv(4096)
            if not data:
                break
            reply += data
    assert reply.startswith(b"HTTP/1.1 413")


def test_wrong_method_is_405_json_on_the_real_server(stack: Stack):
    resp = requests.get(f"{stack.base}/qpay/backend", timeout=10)
    assert resp.status_code == 405
    assert resp.json()["Status"] == "F"


def test_access_log_is_json_without_full_tokens(stack: Stack):
    token = new_token()
    callback(stack, token)
    lines = wait_for(lambda: [ln for ln in stack.web.log().splitlines() if token[:8] in ln], timeout=10,
                     message="the callback in the web log")
    assert all(json.loads(ln)["pay_token"] == token[:8] + "…" for ln in lines)
    assert token not in stack.web.log()
