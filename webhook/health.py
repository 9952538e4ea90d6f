"""Liveness (no I/O) and readiness (database and broker, each under a short deadline)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from core.services.units import UnitOfWork
from webhook.deps import deps

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)

PROBE_TIMEOUT = 2.0


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


def _database_check(unit_of_work: UnitOfWork) -> Callable[[], None]:
    def check() -> None:
        with unit_of_work() as session:
            session.execute(text("SELECT 1"))

    return check


def _probe(name: str, check: Callable[[], None]) -> str | None:
    """None if the check passed in time, else a short reason (never a URL or a credential)."""
    future = deps().probes.submit(check)
    try:
        future.result(timeout=PROBE_TIMEOUT)
    except FutureTimeout:
        return "timeout"
    except Exception as exc:
        log.warning("readiness check failed", extra={"check": name, "error": type(exc).__name__})
        return type(exc).__name__
    return None


@bp.get("/readyz")
def readyz() -> Response:
    d = deps()
    failures: dict[str, str] = {}
    for name, check in (("database", _database_check(d.unit_of_work)), ("broker", d.enqueuer.ping)):
        reason = _probe(name, check)
        if reason is not None:
            failures[name] = reason
    if failures:
        response = jsonify({"status": "unavailable", "failed": sorted(failures), "reasons": failures})
        response.status_code = 503
        return response
    return jsonify({"status": "ready"})
