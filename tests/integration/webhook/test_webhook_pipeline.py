"""The receiver's hand-built resolve messages (webhook/taskmessage.py) are consumed by a real worker.

No beat runs here, so no sweep can re-send a token: a payment that ends paid was resolved from the
message the receiver published after its commit, straight onto the Redis list.
"""

from __future__ import annotations

import re

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from tests.support.poll import wait_for
from tests.support.services import TempRedis, free_port
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

RECEIVED = re.compile(r"Task qpay\.resolve_pay_token\[([0-9a-f-]+)\] received")


def test_receiver_messages_are_consumed_by_a_celery_worker(pg_url: str, redis_server: TempRedis) -> None:
    # given web, the sandbox bank and one worker on a plain redis:// broker, and no beat (no sweep)
    assert redis_server.url.startswith("redis://")
    with Stack(pg_url, redis_server.url, workers=1, beat=False) as stack:
        order_nos = stack.create_orders(3, amount_twd=300)

        # when the customers pay and the bank posts each PayToken to the receiver
        for order_no in order_nos:
            stack.pay(order_no)
        statuses = stack.wait_final(order_nos, timeout=60)

        # then the worker took the receiver's messages and every order is paid, once
        assert set(statuses.values()) == {"paid"}
        assert set(stack.transitions(order_nos).values()) == {1}
        assert {t.state for t in stack.pay_tokens()} == {"resolved"}
        with stack.db.connect() as conn:
            resent = conn.execute(text("SELECT count(*) FROM pay_tokens "
                                       "WHERE last_enqueued_at IS DISTINCT FROM first_received_at"))
            assert resent.scalar_one() == 0  # each was queued by its first receipt, none re-sent since
        worker_log = next(log for name, log in stack.logs().items() if name.startswith("worker-"))
        assert len(set(RECEIVED.findall(worker_log))) >= len(order_nos)


def _scrape(url: str, token: str | None = None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = requests.get(url, headers=headers, timeout=10)
    assert resp.status_code == 200, resp.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(resp.text) for s in family.samples}


def test_scrapes_of_web_and_worker_show_the_pipeline_moving(pg_url: str, redis_server: TempRedis) -> None:
    # given the pipeline with a metrics token on the web and an exporter on the worker
    worker_port = free_port()
    extra = {"METRICS_TOKEN": "scrape-token-4d2a", "WORKER_METRICS_PORT": str(worker_port),
             "METRICS_PORT_SPAN": "1"}
    with Stack(pg_url, redis_server.url, workers=1, beat=False, extra_env=extra) as stack:
        web = f"{stack.web_url}/metrics"
        worker = f"http://127.0.0.1:{worker_port}/metrics"
        stored = ("qpay_callbacks_total", (("result", "stored"), ("source", "backend")))
        shop = ("shop", stack.keys.shop_no)
        create = ("qpay_bank_requests_total",
                  (("key_set", "active"), ("outcome", "ok"), ("service", "OrderCreate"), shop))
        settle = ("qpay_settlement_seconds_count", ())
        query = ("qpay_bank_requests_total",
                 (("key_set", "active"), ("outcome", "ok"), ("service", "OrderPayQuery"), shop))
        query_time = ("qpay_bank_request_duration_seconds_count", (("service", "OrderPayQuery"),))
        assert requests.get(web, timeout=10).status_code == 401  # the token is required
        web0, worker0 = _scrape(web, "scrape-token-4d2a"), _scrape(worker)

        # when two orders are created and paid, and their callbacks resolved by the worker
        order_nos = stack.create_orders(2, amount_twd=300)
        for order_no in order_nos:
            stack.pay(order_no)
        assert set(stack.wait_final(order_nos, timeout=60).values()) == {"paid"}

        # then the web counted the callbacks and its bank calls, in whichever gunicorn worker answers
        # (each of several scrapes sums both processes: multiprocess mode)
        for _ in range(4):
            web1 = _scrape(web, "scrape-token-4d2a")
            assert web1[stored] - web0.get(stored, 0) >= 2
            assert web1[create] - web0.get(create, 0) == 2
        assert web1[("qpay_orders", (("status", "pending"),))] == 0
        assert web1[("qpay_tokens", (("state", "received"),))] == 0
        assert ("qpay_queue_messages", (("queue", "callbacks"),)) in web1
        # and the worker's settlement histogram and bank metrics moved with the resolutions
        worker1 = wait_for(lambda: (s := _scrape(worker))[settle] - worker0.get(settle, 0) >= 2 and s,
                           timeout=15, message="the worker's settlement histogram")
        assert worker1[query] - worker0.get(query, 0) >= 2
        assert worker1[query_time] - worker0.get(query_time, 0) >= 2
