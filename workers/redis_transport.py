"""kombu's Redis transport with one reusable Redis client per channel (a worker's `broker_transport`).

kombu builds a new `redis.Redis` object around its connection pool for every broker operation it
does outside the consumer loop: each task's unacked-hash entry, its acknowledgement, each batch of
task events for Flower. redis-py's client constructor is costly (response callbacks, option tables,
driver info): ~4% of a worker's CPU per settlement in the issue-17 profile. A `redis.Redis` takes a
connection from its pool for each command and gives it back, so one client per channel and pool is
safe to share between the threads pool's threads; that is all this subclass changes. Messages,
acknowledgements, visibility and the unacked bookkeeping are kombu's own code, unchanged.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):  # type: ignore[misc]  # kombu is untyped
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


__all__ = ["Channel", "Transport", "use_in_worker"]
