"""The Celery app: `celery -A workers worker|beat|flower` (docs/pipeline.md).

Importing this module only builds the app from settings; tasks and signal handlers are imported by
the Celery processes through `include`, and nothing connects to the broker or the database here.
"""

from __future__ import annotations

from celery import Celery

app = Celery("qpay", include=["workers.tasks", "workers.notify"])
app.config_from_object("workers.celeryconfig")

__all__ = ["app"]

# Signal handlers (logging, fork hygiene) must be connected before any process sets up logging,
# beat and flower included, which never import the task modules.
import workers.signals  # noqa: E402, F401
