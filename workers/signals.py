"""Process hooks: a forked pool process must not reuse its parent's connections."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_process_init

from core.db import dispose_engines
from workers.bank import reset_client


@worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    """Two processes talking over one inherited socket corrupt each other's conversation."""
    dispose_engines()
    reset_client()
