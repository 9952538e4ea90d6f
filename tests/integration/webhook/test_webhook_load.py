"""Smoke load: 500 callbacks from 8 threads against real gunicorn; every one S, every one stored once."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest
import redis
import requests

from tests.integration.webhook.conftest import Stack

pytestmark = pytest.mark.integration


def test_500_callbacks_from_8_threads_are_all_acknowledged_and_stored_once(stack: Stack):
    tokens = [uuid.uuid4().hex * 2 for _ in range(500)]
    queue_before = redis.Redis.from_url(stack.redis.url).llen("callbacks")

    def send(token: str) -> bytes:
        with requests.post(f"{stack.base}/qpay/backend", json={"ShopNo": "NA0001_001", "PayToken": token},
                           timeout=30) as resp:
            return resp.content

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(send, tokens))

    assert answers == [b'{"Status":"S"}'] * 500
    conn = psycopg2.connect(stack.db_url.replace("postgresql+psycopg2://", "postgresql://"))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*), coalesce(max(receipts), 0) FROM pay_tokens "
                        "WHERE pay_token = ANY(%s)", (tokens,))
            count, max_receipts = cur.fetchone()
    finally:
        conn.close()
    assert (count, max_receipts) == (500, 1)
    assert redis.Redis.from_url(stack.redis.url).llen("callbacks") - queue_before == 500
