"""BackendURL and ReturnURL: cheap checks, record and commit (one transaction), enqueue, answer.

`{"Status":"S"}` is sent only after the PayToken row is committed (database down: 503, so the bank
resends). A broker outage still answers S: the row is durable and the sweep re-enqueues it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, g, jsonify, request, url_for
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from core.logging import bind_context
from core.services.callbacks import CallbackError, CallbackRecord, record_callback, unmark_enqueued
from core.services.units import UnitOfWork
from core.settings import Settings
from core.states import Source
from metrics import defs as metrics
from webhook.bodies import multipart_fields, read_capped
from webhook.clientip import allowed, client_address
from webhook.deps import Deps, core_unit, deps
from webhook.errors import DB_UNAVAILABLE, error_response
from webhook.pages import problem_page
from webhook.status import token_status
from webhook.texts import TEXTS, pick_language
from webhook.validation import (
    MAX_CALLBACK_BODY,
    CallbackInput,
    InvalidInput,
    is_valid_pay_token,
    parse_backend_body,
    parse_return_body,
    validate_callback,
)

log = logging.getLogger(__name__)
bp = Blueprint("callbacks", __name__)

ACK = b'{"Status":"S"}'


def accept(callback: CallbackInput, source: Source) -> None:
    """Record, commit and enqueue (record_and_enqueue) for a Flask view; its access line carries the
    record's facts (webhook/requestlog.py: one log line per callback)."""
    g.access_fields = record_and_enqueue(deps(), callback, source)


def record_and_enqueue(d: Deps, callback: CallbackInput, source: Source) -> dict[str, Any]:
    """Record and commit the token; enqueue it while unresolved. Raises only if the commit failed.
    Returns the facts for the request's access line.

    One transaction per callback. The upsert stamps `last_enqueued_at` when this receipt is the one
    to queue the token (the first, or one arriving SWEEP_GRACE after the last enqueue), so the bank's
    resends and the browser's return do not queue it again. If the publish then fails (broker down),
    a second short transaction clears that stamp, so the bank's next resend queues the token; the
    sweep re-sends it SWEEP_GRACE later in any case.
    """
    bind_context(pay_token=callback.pay_token)
    try:
        record = _record(d.unit_of_work, callback, source, grace=d.settings.sweep_grace)
    except CallbackError as exc:  # the service's own rules are stricter than ours
        raise InvalidInput(str(exc), field="PayToken") from None
    metrics.callback(source.value, "stored" if record.created else "duplicate")
    fields: dict[str, Any] = {"token_id": record.token_id, "receipts": record.receipts,
                              "state": record.state, "source": source.value}
    if record.needs_enqueue:
        # False is logged by the enqueuer; the sweep re-enqueues unresolved tokens after the grace.
        enqueued = d.enqueuer.send_resolve(record.token_id)
        fields["enqueued"] = enqueued
        if not enqueued and record.queued_at is not None:
            _unmark(d.unit_of_work, record.token_id, record.queued_at)
    return fields


def _unmark(unit_of_work: UnitOfWork, token_id: int, queued_at: datetime) -> None:
    """The publish failed: clear this receipt's queued stamp so the bank's next resend queues the token
    (the bank already has its S; a failure here only leaves the token to the sweep)."""
    try:
        with unit_of_work() as session:
            unmark_enqueued(session, token_id, queued_at)
    except SQLAlchemyError as exc:
        log.warning("could not clear the queued mark of token %s (%s); the sweep will re-send it",
                    token_id, type(exc).__name__)


def _record(
    unit_of_work: UnitOfWork, callback: CallbackInput, source: Source, *, grace: float = 120.0
) -> CallbackRecord:
    """One transaction; tried once more if it failed on a connection that was already dead.

    Pooled connections are pinged only after sitting idle (core/db.py), so after a PostgreSQL restart
    each web process meets one dead connection. SQLAlchemy then invalidates that process's whole pool,
    and the retry runs on a fresh connection: the bank gets S instead of a 503 it would resend only
    ten minutes later. Nothing was committed by the failed try (a receipt counted twice at worst).
    """
    unit = core_unit(unit_of_work)

    def once() -> CallbackRecord:
        with unit() as db:
            return record_callback(db, shop_no=callback.shop_no, pay_token=callback.pay_token,
                                   source=source, grace=grace)

    try:
        return once()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        log.info("stale database connection; the pool was recycled, trying once more")
    return once()


def _caller_refused() -> Response | None:
    """QPAY_CALLBACK_ALLOW: only the bank's addresses may push PayTokens (403 for anyone else)."""
    if caller_refused(deps().settings, request.remote_addr, request.headers.get("X-Forwarded-For")):
        return error_response(403, "forbidden")
    return None


def caller_refused(settings: Settings, remote_addr: str | None, forwarded_for: str | None) -> bool:
    """True (and logged) when QPAY_CALLBACK_ALLOW is set and the caller is not in it."""
    if not settings.callback_allow:
        return False
    address = client_address(remote_addr, forwarded_for, settings.forwarded_allow)
    if allowed(address, settings.callback_allow):
        return False
    log.warning("callback refused: caller not in QPAY_CALLBACK_ALLOW", extra={"client": str(address)})
    return True


@contextmanager
def counted(source: Source) -> Iterator[None]:
    """qpay_callbacks_total for a callback refused as invalid or for an unreachable database (accept
    counts the stored and duplicate ones); the exception goes on to its handler."""
    try:
        yield
    except InvalidInput:
        metrics.callback(source.value, "invalid")
        raise
    except DB_UNAVAILABLE:
        metrics.callback(source.value, "db_unavailable")
        raise


@bp.post("/qpay/backend")
def backend() -> Response:
    refused = _caller_refused()
    if refused is not None:
        return refused
    with counted(Source.BACKEND):
        raw = read_capped(MAX_CALLBACK_BODY)
        callback = parse_backend_body(raw, request.mimetype, deps().shops)
        accept(callback, Source.BACKEND)
    return Response(ACK, status=200, mimetype="application/json")


@bp.post("/qpay/return")
def return_url() -> Response:
    """The browser's form post from the bank: recorded like a BackendURL push, then 303 to its page.

    Post/Redirect/Get: reloading or the meta refresh of the page never posts the form again.
    """
    lang = pick_language(request)
    try:
        with counted(Source.RETURN):
            raw = read_capped(MAX_CALLBACK_BODY)
            if request.mimetype == "multipart/form-data":
                callback = validate_callback(multipart_fields(raw), deps().shops)
            else:
                callback = parse_return_body(raw, request.mimetype, deps().shops)
            accept(callback, Source.RETURN)
    except InvalidInput as exc:
        log.info("return rejected", extra={"error": exc.error})
        status = exc.status if exc.status in (400, 413) else 400
        return problem_page(status, lang, "bad_notice_title", exc.error)
    except DB_UNAVAILABLE:
        log.error("database unavailable on return")
        return problem_page(503, lang, "busy_title", TEXTS[lang]["busy"])
    values: dict[str, Any] = {"pay_token": callback.pay_token}
    if request.args.get("lang"):
        values["lang"] = lang
    return Response(status=303, headers={"Location": url_for("customer.return_page", **values),
                                         "Cache-Control": "no-store"})


@bp.get("/qpay/tokens/<pay_token>/status")
def status(pay_token: str) -> Response:
    """Public: reveals only a status word (the order's details are on the token's own page)."""
    if not is_valid_pay_token(pay_token):
        raise InvalidInput("PayToken must be 1-128 characters of 0-9 A-Z a-z _ -", field="PayToken")
    bind_context(pay_token=pay_token)
    with deps().unit_of_work() as session:
        word = token_status(session, pay_token)
    response = jsonify({"status": word or "unknown"})
    response.status_code = 200 if word else 404
    response.headers["Cache-Control"] = "no-store"
    return response


__all__ = ["ACK", "accept", "bp", "caller_refused", "counted", "record_and_enqueue"]
