"""workers/recovery.py on a real Redis: which unacknowledged messages a reaper puts back.

Messages are taken the way a worker takes them (kombu, unacknowledged), then owned by a worker whose
liveness key is gone or present. The end-to-end proof (a SIGKILLed worker, a replacement, every
payment settled within 60 s) is in tests/faults/test_worker_crash.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from celery import Celery
from kombu import Connection, Exchange, Queue

from core.queues import CALLBACK_QUEUE
from tests.support.services import TempRedis
from workers import recovery

pytestmark = pytest.mark.integration


@pytest.fixture
def broker() -> Iterator[str]:
    with TempRedis() as server:
        yield server.url


def _take(url: str, count: int, transport: str | None = None) -> list[str]:
    """Publish `count` messages on the callbacks queue and take them unacknowledged (over kombu's
    Redis transport, or `transport`); their tags."""
    queue = Queue(CALLBACK_QUEUE, Exchange(CALLBACK_QUEUE), routing_key=CALLBACK_QUEUE)
    tags = []
    with Connection(url, transport=transport) as conn:
        channel = conn.channel()
        producer = conn.Producer(channel)
        for i in range(count):
            producer.publish({"n": i}, exchange=queue.exchange, routing_key=CALLBACK_QUEUE, declare=[queue])
        bound = queue(channel)
        for _ in range(count):
            message = bound.get(no_ack=False)
            assert message is not None
            tags.append(str(message.delivery_tag))
        channel.qos._delivered.clear()  # forget them here: this "worker" dies without a word
    return tags


def test_a_dead_owners_messages_are_put_back_and_a_live_owners_are_not(broker: str) -> None:
    # Given three taken messages: one owned by a dead worker, one by a live one, one by nobody known,
    # and an owner entry left over from a message already acknowledged
    client = redis.Redis.from_url(broker)
    dead, live, unknown = _take(broker, 3)
    owners = {dead: "dead-worker", live: "live-worker", "acked": "live-worker"}
    client.hset(recovery.OWNERS_KEY, mapping=owners)  # type: ignore[arg-type]
    client.set(recovery.ALIVE_KEY.format("live-worker"), "1", px=60_000)
    assert client.hlen("unacked") == 3
    assert client.llen(CALLBACK_QUEUE) == 0

    # When a reaper runs
    restored = recovery.reap(Celery(broker=broker, set_as_current=False))

    # Then only the dead worker's message is back on the queue; the others stay taken, and the
    # leftover entries are forgotten
    assert restored == 1
    assert client.llen(CALLBACK_QUEUE) == 1
    assert {t.decode() for t in client.hkeys("unacked")} == {live, unknown}
    assert {t.decode() for t in client.hkeys(recovery.OWNERS_KEY)} == {live}


def test_a_worker_announces_itself_before_it_records_anything(broker: str) -> None:
    # Given a worker on Redis starting its liveness thread
    app = Celery(broker=broker, set_as_current=False)
    recovery.stop()
    try:
        assert recovery.ensure_started(app) is True
        # Then its liveness key exists already, with a TTL, before any task is recorded as its own
        client = redis.Redis.from_url(broker)
        ttl = client.pttl(recovery.ALIVE_KEY.format(recovery.worker_id()))
        assert 0 < ttl <= recovery.LIVENESS_TTL * 1000
    finally:
        recovery.stop()


def test_a_taken_message_is_recorded_with_its_owner_by_the_workers_transport(broker: str) -> None:
    # Given a worker's app attached to recovery, not yet started (its first message starts it)
    app = Celery(broker=broker, set_as_current=False)
    recovery.stop()
    recovery.attach(app)
    try:
        # When it takes two messages over the worker's Redis transport
        tags = _take(broker, 2, transport="workers.redis_transport:Transport")

        # Then each is in kombu's unacked hash and owned by this worker, whose liveness key exists
        client = redis.Redis.from_url(broker)
        assert {t.decode() for t in client.hkeys("unacked")} == set(tags)
        owners = {k.decode(): v.decode() for k, v in client.hgetall(recovery.OWNERS_KEY).items()}
        assert owners == dict.fromkeys(tags, recovery.worker_id())
        assert client.exists(recovery.ALIVE_KEY.format(recovery.worker_id()))
    finally:
        recovery.stop()
        recovery.attach_none()


def test_without_an_attached_worker_a_taken_message_has_no_owner(broker: str) -> None:
    # Given the worker's transport in a process that is no worker (nothing attached)
    recovery.attach_none()
    # When it takes a message
    tags = _take(broker, 1, transport="workers.redis_transport:Transport")
    # Then kombu's bookkeeping is as ever and no owner is claimed
    client = redis.Redis.from_url(broker)
    assert {t.decode() for t in client.hkeys("unacked")} == set(tags)
    assert client.hlen(recovery.OWNERS_KEY) == 0
