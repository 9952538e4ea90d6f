"""Beat drives the sweep: a dropped callback and an unsent task are both recovered without anyone asking."""

from __future__ import annotations

from uuid import uuid4

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from core.db import transaction
from core.services.callbacks import record_callback
from tests.support.poll import wait_for
from tests.support.services import free_port
from workers.beatlock import OwnerLock

pytestmark = pytest.mark.integration


WORKER_METRICS = free_port()
BEAT_METRICS = free_port()


@pytest.fixture(scope="module")
def stack(make_stack):
    s = make_stack(SWEEP_INTERVAL="1", BEAT_LOCK_TTL="3", WORKER_METRICS_PORT=str(WORKER_METRICS),
                   BEAT_METRICS_PORT=str(BEAT_METRICS), METRICS_PORT_SPAN="1")
    s.start_worker("all", queues="callbacks,sweep", concurrency=2)
    s.start_beat()
    return s


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_a_payment_whose_callback_the_bank_dropped_is_settled_by_the_scheduled_sweep(stack):
    # given a bank that never calls back
    stack.faults(drop_callback_rate=1.0)
    order_no = stack.create_order("C", 260)
    # when the customer pays (and nobody is told)
    stack.pay(order_no)
    # then a scheduled sweep finds the payment and settles the order
    stack.wait_status(order_no, "paid", timeout=30)
    assert [(e.to_status, e.source) for e in stack.events(order_no)][-1] == ("paid", "sweep")
    # and the worker's metrics count the passes and the order settled by a sweep step (a pass is
    # counted when it ends, which may be after the order it settled is already visible as paid)
    def counted() -> bool:
        worker = _scrape(WORKER_METRICS)
        settled = sum(worker.get(("qpay_sweep_settled_total", (("step", step),)), 0.0)
                      for step in ("bulk", "targeted"))
        return worker.get(("qpay_sweep_runs_total", (("result", "ok"),)), 0.0) >= 1 and settled >= 1

    wait_for(counted, timeout=30, message="the worker's exporter to count a clean sweep pass that settled")


def test_the_beat_that_sends_the_schedule_says_so_on_its_exporter(stack):
    wait_for(lambda: _scrape(BEAT_METRICS)[("qpay_beat_lock_held", ())] == 1, timeout=15,
             message="the beat exporter to report the lock held")


def test_a_token_stored_while_the_broker_was_down_is_enqueued_again_by_the_sweep(stack):
    # given a paid order whose PayToken was recorded but never enqueued (the broker was down)
    stack.faults(drop_callback_rate=1.0)
    order_no = stack.create_order("A", 410)
    pay_token = stack.pay(order_no)
    with transaction(stack.db_url) as session:
        record_callback(session, shop_no="NA0001_001", pay_token=pay_token, source="backend")
    # then the sweep's outbox relay sends it, and the worker resolves the token
    wait_for(lambda: (t := stack.token(pay_token)) is not None and t.state == "resolved", timeout=30,
             message="the token to be resolved")
    stack.wait_status(order_no, "paid")
    token = stack.token(pay_token)
    assert token is not None
    assert token.last_enqueued_at is not None


def test_only_one_beat_holds_the_schedule_lock(stack):
    # given the running beat holds the owner lock in the broker's Redis
    client = redis.Redis.from_url(stack.redis.url)
    wait_for(lambda: client.get("qpay:beat:owner"), timeout=10, message="beat to take its lock")
    # when a second scheduler tries to take it
    rival = OwnerLock(client, ttl=3)
    # then it cannot while the first one renews it
    assert rival.hold() is False
    beat = next(p for p in stack.procs if p.name == "beat")
    assert "beat lock acquired" in beat.log()
    assert 0 < client.ttl("qpay:beat:owner") <= 3


def test_a_lock_is_taken_over_only_after_its_owner_stops_renewing(stack):
    client = redis.Redis.from_url(stack.redis.url)
    key = f"qpay:test-lock:{uuid4().hex}"
    owner, rival = OwnerLock(client, ttl=1, key=key), OwnerLock(client, ttl=1, key=key)
    assert owner.hold() is True
    assert owner.hold() is True  # renewing is holding
    assert rival.hold() is False
    # when the owner stops renewing, the lease runs out and the rival takes over
    wait_for(rival.hold, timeout=5, interval=0.2, message="the rival to take over")
    assert owner.hold() is False
    rival.release()
    assert client.get(key) is None
