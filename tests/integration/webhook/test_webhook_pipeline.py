"""The receiver's hand-built resolve messages (webhook/taskmessage.py) are consumed by a real worker.

No beat runs here, so no sweep can re-send a token: a payment that ends paid was resolved from the
message the receiver published after its commit, straight onto the Redis list.
"""

from __future__ import annotations

import subprocess

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from tests.support import brokers
from tests.support.poll import wait_for
from tests.support.services import TempRedis, free_port
from tests.support.stack import Stack, resolved_task_ids

pytestmark = pytest.mark.integration


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
        assert len(set(resolved_task_ids(worker_log))) >= len(order_nos)


def _rabbitmqctl_rows(*args: str) -> list[list[str]]:
    out = subprocess.run(["rabbitmqctl", "-q", "--no-table-headers", *args], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    return [line.split("\t") for line in out.splitlines() if line.strip()]


def test_the_pipeline_runs_on_rabbitmq_with_quorum_queues_and_publisher_confirms(pg_url: str) -> None:
    # given web, the sandbox bank, one worker and beat on a vhost of its own on RabbitMQ (BROKER_URL),
    # with beat's lock in the Redis that REDIS_URL names
    with brokers.broker_for("rabbitmq") as broker, \
            Stack(pg_url, broker.url, workers=1, beat=True, broker_kind=broker.kind,
                  extra_env=broker.env) as stack:
        vhost = broker.url.rsplit("/", 1)[1]
        orders = stack.create_orders(3, amount_twd=330)
        declined = stack.create_order(340, pay_type="C")

        # when the customers pay, one card is declined, and the bank fails the first OrderPayQuery
        # calls so that their tokens wait out a retry countdown (in RabbitMQ's delay queues)
        stack.set_faults(fail_next=2, fail_next_action="error", fail_next_status=503,
                         services=["OrderPayQuery"])
        for order_no in orders:
            stack.pay(order_no)
        stack.pay(declined, outcome="failed")
        statuses = stack.wait_final([*orders, declined], timeout=90)

        # then every order ends right, changed once, from the receiver's messages and their retries
        assert statuses == {**dict.fromkeys(orders, "paid"), declined: "failed"}
        assert set(stack.transitions([*orders, declined]).values()) == {1}
        # (beat's sweep may settle an order first: its token is resolved when its retry comes due)
        wait_for(lambda: {t.state for t in stack.pay_tokens()} == {"resolved"}, timeout=30,
                 message="every token resolved")
        assert max(t.attempts for t in stack.pay_tokens()) >= 2  # a retry went through the broker
        # on quorum queues, with the publishing channels in confirm mode
        queues = {row[0]: row[1] for row in _rabbitmqctl_rows("list_queues", "-p", vhost, "name", "type")}
        assert (queues["callbacks"], queues["sweep"]) == ("quorum", "quorum"), queues
        assert any(name.startswith("celery_delayed_") for name in queues), queues  # native delayed delivery
        channels = _rabbitmqctl_rows("list_channels", "vhost", "confirm")
        confirming = [row for row in channels if row[0] == vhost]
        assert any(row[1] == "true" for row in confirming), confirming


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
