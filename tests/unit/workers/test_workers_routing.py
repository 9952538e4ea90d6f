"""Each task reaches its own queue only: the declared queues (for Flower) keep Celery's routing."""

from __future__ import annotations

import pytest

from core.queues import CALLBACK_QUEUE, RESOLVE_TASK, SWEEP_QUEUE, SWEEP_TASK
from workers import app


@pytest.mark.parametrize(("task", "queue"), [(RESOLVE_TASK, CALLBACK_QUEUE), (SWEEP_TASK, SWEEP_QUEUE)])
def test_a_task_is_routed_to_its_queue_by_its_own_exchange_and_key(task: str, queue: str) -> None:
    route = app.amqp.router.route({}, task)
    assert route["queue"].name == queue
    assert route["queue"].exchange.name == queue
    assert route["queue"].routing_key == queue


def test_no_two_declared_queues_share_a_binding() -> None:
    bindings = [(q.exchange.name, q.routing_key) for q in app.amqp.queues.values()]
    assert len(bindings) == len(set(bindings))
    assert {CALLBACK_QUEUE, SWEEP_QUEUE} <= set(app.amqp.queues)
