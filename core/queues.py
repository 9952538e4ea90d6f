"""Task and queue names shared by the senders (web, CLI) and the workers, as plain strings.

Sending by name keeps Celery worker code out of the web process and Celery out of core/.
"""

RESOLVE_TASK = "qpay.resolve_pay_token"  # args: [token_id: int]
SWEEP_TASK = "qpay.sweep"  # no args
CALLBACK_QUEUE = "callbacks"  # fresh payments: never behind a sweep
SWEEP_QUEUE = "sweep"
NOTIFY_TASK = "qpay.deliver_event"  # args: [event_id: int]
NOTIFY_QUEUE = "notifications"  # pushes to the shop: a dead shop endpoint never delays a payment
