"""Task and queue names, and the queue declarations, shared by the senders (web, CLI) and the workers.

Sending by name keeps Celery worker code out of the web process and Celery out of core/.
"""

RESOLVE_TASK = "qpay.resolve_pay_token"  # args: [token_id: int]
SWEEP_TASK = "qpay.sweep"  # no args
CALLBACK_QUEUE = "callbacks"  # fresh payments: never behind a sweep
SWEEP_QUEUE = "sweep"
NOTIFY_TASK = "qpay.deliver_event"  # args: [event_id: int]
NOTIFY_QUEUE = "notifications"  # pushes to the shop: a dead shop endpoint never delays a payment

# -- the broker ---------------------------------------------------------------------------------------
# Plain data (no Celery import): the workers' config and the web's sender must declare the queues
# alike, or RabbitMQ refuses the second declaration (PRECONDITION_FAILED).
AMQP_SCHEMES = ("amqp://", "amqps://", "pyamqp://")
# RabbitMQ: quorum queues (replicated, durable; a message survives a broker node's loss), bound to
# topic exchanges, because Celery's native delayed delivery (how a retry countdown waits on a quorum
# queue, in the broker rather than unacknowledged in a worker) does not work through direct ones.
QUORUM = {"x-queue-type": "quorum"}


def is_amqp(broker_url: str) -> bool:
    return broker_url.startswith(AMQP_SCHEMES)


def amqp_queues() -> dict[str, dict[str, object]]:
    """Celery's `task_queues` (its mapping form) for RabbitMQ."""
    return {name: {"exchange": name, "exchange_type": "topic", "routing_key": name,
                   "queue_arguments": dict(QUORUM), "durable": True}
            for name in (CALLBACK_QUEUE, SWEEP_QUEUE, NOTIFY_QUEUE)}


# Publisher confirms: a publish returns only once RabbitMQ has taken the message (a rejected one
# raises), so "enqueued" means stored by the broker, as an LPUSH does on Redis.
AMQP_TRANSPORT_OPTIONS = {"confirm_publish": True}
