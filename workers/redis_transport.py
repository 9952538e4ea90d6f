"""kombu's Redis transport as a worker uses it (its `broker_transport`): one reusable Redis client per
channel, and a taken message's owner recorded with it.

kombu builds a new `redis.Redis` object around its connection pool for every broker operation it
does outside the consumer loop: each task's unacked-hash entry, its acknowledgement, each batch of
task events for Flower. redis-py's client constructor is costly (response callbacks, option tables,
driver info): ~4% of a worker's CPU per settlement in the issue-17 profile. A `redis.Redis` takes a
connection from its pool for each command and gives it back, so one client per channel and pool is
safe to share between the threads pool's threads. Messages, acknowledgements and visibility are
kombu's own code, unchanged.

The one addition: when kombu enters a taken message in its `unacked` hash, the same MULTI records the
message's owner (workers/recovery.py), so a dead worker's tasks come back in seconds. A separate
HSET per task cost a broker round trip in the consumer loop (issue 17); in one transaction the owner
can never be seen without its message nor the message without its owner.
"""

from __future__ import annotations

from time import time
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.json import dumps

from workers import recovery


class QoS(kombu_redis.QoS):  # type: ignore[misc]  # kombu is untyped
    def append(self, message: Any, delivery_tag: str) -> None:
        """kombu's own append (the unacked index and hash, one MULTI), plus the owner entry in it."""
        delivery = message.delivery_info
        owner = recovery.owner()
        with self.pipe_or_acquire() as pipe:
            pipe.zadd(self.unacked_index_key, {delivery_tag: time()})
            pipe.hset(self.unacked_key, delivery_tag,
                      dumps([message._raw, delivery["exchange"], delivery["routing_key"]]))
            if owner is not None:
                pipe.hset(recovery.OWNERS_KEY, delivery_tag, owner)
            pipe.execute()
        virtual.QoS.append(self, message, delivery_tag)


class Channel(kombu_redis.Channel):  # type: ignore[misc]  # kombu is untyped
    QoS = QoS
    _shared_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # the consumer loop's own client (kombu caches it already)
            return super()._create_client(asynchronous=True)
        client = self._shared_client
        if client is None or client.connection_pool is not self.pool:  # a new pool after a reconnect
            client = self._shared_client = super()._create_client()
        return client


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel


def use_in_worker(conf: Any) -> None:
    """A worker on a `redis://` or `rediss://` broker uses this transport (Celery's broker_transport).
    Workers only: Flower reads the broker's URL back from its connection, whose scheme would then name
    this module, and refuses a broker it does not recognise; beat and the web publish too little to
    matter."""
    if str(conf.broker_url or "").startswith(("redis://", "rediss://")):
        conf.broker_transport = f"{__name__}:Transport"


__all__ = ["Channel", "QoS", "Transport", "use_in_worker"]
