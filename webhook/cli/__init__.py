"""The on-call engineer's commands, under `flask --app webhook` (docs/architecture.md, Operations).

    shops                              the configured shops, with key fingerprints (never keys)
    shops check                        ask the bank (Nonce, a harmless OrderQuery) with each key set of
                                       each shop; print which sets it accepts
    orders show <order_no> [--shop S]  status, bank calls, events and tokens as one timeline, then the
                                       shop notifications with their delivery state
    events ...                         the shop notifications (webhook/events_cli.py)
    orders stuck [--older-than 30m]    pending work older than that, tokens not yet resolved, untrusted
                                       and dead tokens (any age), reviews (late payments included)
    orders requery <order_no>          OrderQuery by OrderNo now and settle from the bank's answer
    tokens replay <pay_token> [--now]  record the token as the operator's, then enqueue or resolve inline;
                                       an untrusted token is sent again (the deliberate retry)
    tokens replay --untrusted [--now]  send every untrusted token again (once the bad replies' cause is fixed)
    tokens replay --dead [--now]       send every dead token again (attempts reset)
    sweep run                          one reconciliation pass in the foreground
    db upgrade                         alembic upgrade head (SQLite and PostgreSQL)

Every command is idempotent (running it twice changes nothing more) and exits 0 when it did its job,
1 when the order or token is unknown or the work failed, 2 on a usage error. Commands are thin like
views: parse, open the transaction, call one service function, print the result. The groups live in
orders.py, tokens.py, ops.py (sweep, shops) and db.py; what they share in common.py.
"""

from __future__ import annotations

from flask import Flask

from webhook.cli.common import parse_duration
from webhook.cli.db import db_cli
from webhook.cli.ops import shops_cli, sweep_cli
from webhook.cli.orders import orders_cli, timeline
from webhook.cli.tokens import tokens_cli
from webhook.events_cli import events_cli


def register_cli(app: Flask) -> None:
    """Attach the ops commands to `app` (create_app calls this)."""
    for group in (orders_cli, tokens_cli, sweep_cli, db_cli, shops_cli, events_cli):
        app.cli.add_command(group)


__all__ = ["parse_duration", "register_cli", "timeline"]
