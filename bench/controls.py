"""The two control endpoints of bench/ingest, served by gunicorn exactly like the real receiver.

- `bare_app()`: parses the JSON body and answers {"Status":"S"}: the ceiling of Flask + gunicorn.
- `durable_app()`: the least work that keeps the "no payment is lost" promise: one
  INSERT ... ON CONFLICT into the real pay_tokens table (same engine settings as core.db, SQLAlchemy
  Core) committed,
  then one Redis LPUSH, then S. The real receiver should come close to this; everything it does
  beyond it (validation, Celery's message envelope, logging) is the gap the ratio shows.

Configuration comes from DATABASE_URL and REDIS_URL, as for the real app.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, request
from sqlalchemy import text

_ACK = json.dumps({"Status": "S"})
_UPSERT = text(
    "INSERT INTO pay_tokens (shop_no, pay_token, source, receipts, first_received_at, last_received_at,"
    " state, attempts) VALUES (:shop, :token, 'backend', 1, :now, :now, 'received', 0)"
    " ON CONFLICT (pay_token) DO UPDATE SET receipts = pay_tokens.receipts + 1,"
    " last_received_at = EXCLUDED.last_received_at RETURNING id"
)
CONTROL_QUEUE = "bench:control"  # never a Celery queue: nothing consumes it


def _ack() -> Response:
    return Response(_ACK, status=200, mimetype="application/json")


def _healthz(app: Flask) -> None:
    @app.get("/healthz")
    def healthz() -> Response:
        return Response('{"ok":true}', mimetype="application/json")


def bare_app() -> Flask:
    app = Flask("bench_bare")
    _healthz(app)

    @app.post("/qpay/backend")
    def backend() -> Response | tuple[str, int]:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return '{"Status":"F"}', 400
        return _ack()

    return app


def durable_app() -> Flask:
    import redis

    from core.db import make_engine

    app = Flask("bench_durable")
    _healthz(app)
    state: dict[str, Any] = {}

    def clients() -> tuple[Any, Any]:
        pid = os.getpid()  # build pools in the worker, after gunicorn forked it
        if state.get("pid") != pid:
            state.update(pid=pid, engine=make_engine(os.environ["DATABASE_URL"]),
                         redis=redis.Redis.from_url(os.environ["REDIS_URL"]))
        return state["engine"], state["redis"]

    @app.post("/qpay/backend")
    def backend() -> Response | tuple[str, int]:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("PayToken"), str):
            return '{"Status":"F"}', 400
        engine, broker = clients()
        with engine.begin() as conn:  # committed before the broker is told and before S
            token_id = conn.execute(_UPSERT, {"shop": str(body.get("ShopNo", "")), "token": body["PayToken"],
                                              "now": datetime.now(UTC)}).scalar_one()
        broker.lpush(CONTROL_QUEUE, json.dumps({"token_id": token_id}))
        return _ack()

    return app
