"""The worker's consumer, with Flower's task events published in batches.

With the event loop (the Redis and AMQP transports), Celery buffers task events and asks the loop to
publish the buffer "soon" after every event: at 100 settlements/s that was a publish and a wake-up of
the loop per event, three per task (received, started, succeeded), ~8% of a worker's CPU (issue 17).
Here the buffer is published at most once per EVENTS_FLUSH_INTERVAL (and at once when it holds
Celery's buffer_limit events), so Flower sees each event at most that much later. Nothing else changes:
the same events, the same exchange, the same `task.multi` batches Flower already reads.
"""

from __future__ import annotations

import logging
from time import monotonic
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

log = logging.getLogger(__name__)

EVENTS_FLUSH_INTERVAL = 0.25  # seconds: Flower's view lags by at most this


class Consumer(CeleryConsumer):  # type: ignore[misc]  # celery is untyped
    """celery.worker.consumer.Consumer whose task events are published once per interval."""

    _next_flush = 0.0

    def on_send_event_buffered(self) -> None:
        """Called by the event dispatcher (from any pool thread) after it buffered an event."""
        if not self.hub:
            return
        now = monotonic()
        if now < self._next_flush:  # a publish is already due within the interval: it takes this one
            return
        self._next_flush = now + EVENTS_FLUSH_INTERVAL
        # The timer is set from the loop's own thread (call_soon wakes it); a lost timer (the loop
        # reset after a broker outage) is replaced by the next event after the interval.
        self.hub.call_soon(self._arm_flush)

    def _arm_flush(self) -> None:
        self.hub.call_later(EVENTS_FLUSH_INTERVAL, self._flush_events)

    def shutdown(self) -> Any:
        """Publish what the batch holds before the dispatcher closes, so Flower sees the last tasks end."""
        try:
            self._flush_events()
        except Exception as exc:  # the broker is gone: those events are lost, as Celery's would be
            log.warning("could not publish the last task events", extra={"error": type(exc).__name__})
        return super().shutdown()
