"""Resolving a PayToken: ask the bank what it means (OrderPayQuery), then settle the order it names.

Read, end the transaction, call the bank, then write in a new transaction (as the sweep does): no
database transaction is open while the bank answers, so a slow bank never holds SQLite's write lock
(every callback would wait behind it) nor a PostgreSQL connection idle in transaction. No row lock is
needed either: the writes are conditional UPDATEs (`... WHERE state = 'received'`, the order's `...
WHERE status = <current>`), so any number of concurrent resolvers of one token end with one transition
and one event.

A paid result is confirmed before it pays: OrderQuery for the OrderNo it names must report it paid,
with the same TSNo and amount (QPAY_CONFIRM_PAYMENTS; the reply's Sign does not cover what names the
order). A reply that fails verification parks the token as `untrusted`; every failed attempt counts,
and a token failing RESOLVE_MAX_ATTEMPTS times is `dead`. Neither is re-enqueued by the sweep (whose
OrderQuery still settles the order); `reopen_untrusted` (the ops CLI's replay) is the way back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.logging import short_token
from core.models import PayToken
from core.services.settlement import Confirmation, settle_from_pay_result
from core.services.units import UnitOfWork, as_unit_of_work
from core.settings import Settings
from core.shops import UnknownShop
from core.sinopac.client import client_of
from core.sinopac.errors import BankProtocolError, BankRejection, BankTransportError, QPayError
from core.sinopac.messages import OrderQueryRequest
from core.sinopac.types import PayQueryResult
from core.states import Source, TokenState

if TYPE_CHECKING:
    from core.sinopac.client import BankClient, ClientFor

log = logging.getLogger(__name__)

ResolveKind = Literal["settled", "noop", "review", "rejected", "transient", "protocol_error", "dead"]
_MAX_ERROR = 500


@dataclass(frozen=True)
class ResolveOutcome:
    kind: ResolveKind
    error: str | None = None
    order_no: str | None = None
    token_label: str | None = None  # the PayToken shortened for logs (set for protocol_error and dead)
    received_at: datetime | None = None  # the token's first receipt (set for settled: the metrics' start)


def _update_token(session: Session, token_id: int, **values: object) -> bool:
    """A conditional update: only a token still in state received changes (first resolver wins)."""
    result = session.execute(
        update(PayToken)
        .where(PayToken.id == token_id, PayToken.state == TokenState.RECEIVED.value)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _kill_if_exhausted(session: Session, token_id: int, max_attempts: int) -> bool:
    """received -> dead once attempts reach the bound; True only for the call that made the move, so
    the ALERT is raised once however many resolvers fail together."""
    result = session.execute(
        update(PayToken)
        .where(PayToken.id == token_id, PayToken.state == TokenState.RECEIVED.value,
               PayToken.attempts >= max_attempts)
        .values(state=TokenState.DEAD.value)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def record_failed_attempt(
    source: Session | UnitOfWork, settings: Settings, token_id: int, error: str
) -> bool:
    """Count one failed resolution (any kind: an unexpected exception too); True if the token died.

    For failures the resolution could not record itself (a bug, a crash in between): the task calls
    it, so that no token can crash-loop forever.
    """
    with as_unit_of_work(source)() as session:
        _update_token(session, token_id, attempts=PayToken.attempts + 1, last_error=error[:_MAX_ERROR])
        return _kill_if_exhausted(session, token_id, settings.max_attempts)


def _confirm(client: BankClient, settings: Settings, result: PayQueryResult) -> Confirmation | None:
    """OrderQuery for the order a paid result names (outside any transaction); None if not needed."""
    ts = result.result
    if not settings.confirm_payments or ts is None or ts.status != "S" or not ts.order_no:
        return None
    try:
        query = client.query_orders(OrderQueryRequest(order_no=ts.order_no))
    except BankRejection as exc:
        # A refused confirmation is no verdict on the payment: try again later, like an outage.
        raise BankTransportError(f"OrderQuery to confirm the payment was refused: {exc.code or '?'}",
                                 service="OrderQuery") from None
    return Confirmation(next((r for r in query.orders if r.order_no == ts.order_no), None))


def resolve_token(
    source: Session | UnitOfWork,
    client: BankClient | ClientFor,
    settings: Settings,
    token_id: int,
    *,
    now: datetime | None = None,
) -> ResolveOutcome:
    """Resolve one stored PayToken with its shop's keys (`client`: that shop's client, or a ClientFor);
    idempotent. `source`: a unit of work (core.db.transaction: one short
    transaction to read, none during the bank calls, one to write) or a Session (all of it in the
    caller's transaction: tests).

    transient (timeouts, any non-200 answer, a maintenance page, an unconfirmable payment): attempts
    and last_error recorded, the caller retries later.
    rejected: the bank refused the token (BankRejection) or it names no order of ours.
    protocol_error: a QPay envelope that cannot be trusted (bad Sign, undecryptable, malformed): the
    token becomes untrusted with last_error set, so nothing retries it blindly.
    dead: this failure was attempt number RESOLVE_MAX_ATTEMPTS; the token is parked.
    The caller raises the alert for protocol_error, dead and review (the task's log line carries the
    task id and retries; the CLI prints it), so it is logged once.
    """
    units = as_unit_of_work(source)
    at = now if now is not None else datetime.now(UTC)
    with units() as session:
        row = session.execute(
            select(PayToken.pay_token, PayToken.state, PayToken.order_no, PayToken.source,
                   PayToken.shop_no, PayToken.first_received_at).where(PayToken.id == token_id)
        ).first()
    if row is None:
        log.warning("resolve: no pay token with id %s", token_id, extra={"token_id": token_id})
        return ResolveOutcome("noop", error="no such token")
    if row.state != TokenState.RECEIVED:
        return ResolveOutcome("noop", order_no=row.order_no)
    token = row.pay_token
    extra = {"pay_token": short_token(token), "token_id": token_id, "shop_no": row.shop_no}
    attempts = PayToken.attempts + 1
    try:
        shop_client = client_of(client, row.shop_no)
    except UnknownShop as exc:
        # The shop was removed from the configuration: keep the token (the sweep offers it again), so
        # putting the shop back resolves it; nothing is lost or decided without its keys.
        with units() as session:
            _update_token(session, token_id, attempts=attempts, last_error=str(exc))
        log.warning("resolve %s: %s", short_token(token), exc, extra=extra)
        return ResolveOutcome("transient", error=str(exc))
    try:
        result = shop_client.pay_query(token)
        confirmation = _confirm(shop_client, settings, result)
    except QPayError as exc:
        return _failed(units, settings, token_id, token, exc, at, extra)

    src = Source(row.source) if row.source in Source._value2member_map_ else Source.BACKEND
    if now is None:  # the moment it settles, after the bank answered (the event's and the token's time)
        at = datetime.now(UTC)
    with units() as session:
        outcome = settle_from_pay_result(session, settings, result, source=src, pay_token=token, now=at,
                                         confirmation=confirmation, shop_no=row.shop_no)
        if outcome.kind == "unknown_order":
            _update_token(
                session,
                token_id,
                attempts=attempts,
                state=TokenState.REJECTED.value,
                last_error=(outcome.reason or "unknown order")[:_MAX_ERROR],
                order_no=None,
                resolved_at=at,
            )
            return ResolveOutcome("rejected", error=outcome.reason, order_no=outcome.order_no)
        _update_token(
            session,
            token_id,
            attempts=attempts,
            state=TokenState.RESOLVED.value,
            order_no=outcome.order_no,
            last_error=outcome.reason if outcome.kind in ("review", "conflict") else None,
            resolved_at=at,
        )
    if outcome.kind in ("paid", "failed") and outcome.changed:
        return ResolveOutcome("settled", order_no=outcome.order_no, received_at=row.first_received_at)
    if outcome.kind == "review" and outcome.changed:
        return ResolveOutcome("review", error=outcome.reason, order_no=outcome.order_no)
    return ResolveOutcome("noop", error=outcome.reason, order_no=outcome.order_no)


def _failed(
    units: UnitOfWork, settings: Settings, token_id: int, token: str, exc: QPayError, at: datetime,
    extra: dict[str, object],
) -> ResolveOutcome:
    """Record a failed bank call on the token: transient, rejected, untrusted, or dead at the bound."""
    attempts = PayToken.attempts + 1
    label = short_token(token)
    with units() as session:
        if isinstance(exc, BankRejection):
            error = f"rejected by the bank: {exc.code or '?'} {exc.description}".strip()[:_MAX_ERROR]
            _update_token(session, token_id, attempts=attempts, last_error=error,
                          state=TokenState.REJECTED.value, resolved_at=at)
            log.warning("resolve %s: %s", label, error, extra=extra)
            return ResolveOutcome("rejected", error=error)
        error = f"{type(exc).__name__}: {exc}"[:_MAX_ERROR]
        if isinstance(exc, BankProtocolError):
            _update_token(session, token_id, attempts=attempts, last_error=error,
                          state=TokenState.UNTRUSTED.value)
            return ResolveOutcome("protocol_error", error=error, token_label=label)
        _update_token(session, token_id, attempts=attempts, last_error=error)
        died = _kill_if_exhausted(session, token_id, settings.max_attempts)
    if died:
        return ResolveOutcome("dead", error=error, token_label=label)
    log.warning("resolve %s: transient bank error: %s", label, error, extra=extra)
    return ResolveOutcome("transient", error=error)


def reopen_untrusted(session: Session, token_id: int) -> bool:
    """An operator's deliberate retry: an untrusted or dead token goes back to received with its
    attempts reset (True if it was one).

    Conditional like every token change, so two operators replaying at once reopen it once. The
    last_error stays as the record of why it was parked until the next attempt replaces it.
    """
    result = session.execute(
        update(PayToken)
        .where(PayToken.id == token_id,
               PayToken.state.in_([TokenState.UNTRUSTED.value, TokenState.DEAD.value]))
        .values(state=TokenState.RECEIVED.value, attempts=0)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
