"""qpay_queue_messages' reader against a real Redis: the direct pipelined LLEN and kombu's passive
declare (the path of every other broker) count the same messages, priority lists included."""

from __future__ import annotations

import pytest
import redis

from core.queues import CALLBACK_QUEUE, SWEEP_QUEUE
from metrics.figures import REDIS_PRIORITY_SEP, QueueDepths, broker_queue_lengths
from tests.support.services import TempRedis

pytestmark = pytest.mark.integration


def test_both_readers_count_the_waiting_messages_of_each_queue(redis_server: TempRedis) -> None:
    client = redis.Redis.from_url(redis_server.url)
    queues = (CALLBACK_QUEUE, SWEEP_QUEUE)
    # an empty queue is a list that does not exist in Redis
    assert QueueDepths(redis_server.url, queues)() == {CALLBACK_QUEUE: 0, SWEEP_QUEUE: 0}
    assert broker_queue_lengths(redis_server.url, queues) == {CALLBACK_QUEUE: 0, SWEEP_QUEUE: 0}
    client.lpush(CALLBACK_QUEUE, b"a", b"b", b"c")
    client.lpush(f"{SWEEP_QUEUE}{REDIS_PRIORITY_SEP}6", b"prioritised")  # kombu's list for priority 6
    client.lpush(SWEEP_QUEUE, b"plain")
    expected = {CALLBACK_QUEUE: 3, SWEEP_QUEUE: 2}
    assert QueueDepths(redis_server.url, queues)() == expected
    assert broker_queue_lengths(redis_server.url, queues) == expected
    client.close()


def test_an_unreachable_broker_raises_for_the_collector_to_count() -> None:
    with TempRedis() as server:
        url = server.url
    with pytest.raises(redis.ConnectionError):
        QueueDepths(url, (CALLBACK_QUEUE,), timeout=0.5)()
