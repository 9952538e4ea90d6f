"""The receiver's hand-built resolve messages (webhook/taskmessage.py) are consumed by a real worker.

No beat runs here, so no sweep can re-send a token: a payment that ends paid was resolved from the
message the receiver published after its commit, straight onto the Redis list.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import text

from tests.support.services import TempRedis
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
