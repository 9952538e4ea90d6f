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

What resolve_token returns (core/services/outcomes.py, ResolveKind):
  transient       timeouts, any non-200 answer, a maintenance page, an unconfirmable payment: attempts
                  and last_error recorded, the caller retries later;
  rejected        the bank refused the token (BankRejection) or it names no order of ours;
  protocol_error  a QPay envelope that cannot be trusted (bad Sign, undecryptable, malformed): the token
                  becomes untrusted with last_error set, so nothing retries it blindly;
  dead            this failure was attempt number RESOLVE_MAX_ATTEMPTS; the token is parked;
  settled, review, noop: the reply was applied (core/services/settlement.py) and the token resolved.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, NamedTuple, cast

from sqlalchemy import Table, Update, bindparam, select, update
from sqlalchemy.exc import NoResultFound
from sqlalchemy.orm import Session

from core.driver import prebuilt
from core.logging import short_token
from core.models import PayToken
from core.services.outcomes import ResolveKind, ResolveOutcome, SettleKind
from core.services.settlement import Confirmation, settle_from_pay_result
from core.services.units import StatementUnit, UnitOfWork, as_unit_of_work
from core.services.updates import bound_values, rows_updated, run, value_params
from core.settings import Settings
from core.shops import UnknownShop
from core.sinopac.client import NonceAhead, client_of, confirms_ahead
from core.sinopac.errors import BankProtocolError, BankRejection, BankTransportError, QPayError
from core.sinopac.messages import OrderQueryRequest
from core.sinopac.types import PayQueryResult
from core.states import Source, TokenState

if TYPE_CHECKING:
    from core.sinopac.client import BankClient, ClientFor

log = logging.getLogger(__name__)

__all__ = [
    "ResolveKind", "ResolveOutcome", "record_failed_attempt", "reopen_parked", "reopen_untrusted",
    "resolve_token",
]

_MAX_ERROR = 500


class _TokenRow(NamedTuple):
    """What resolve_token reads of a token (_READ_TOKEN's columns, in its order)."""

    pay_token: str
    state: str
    order_no: str | None
    source: str
    shop_no: str
    first_received_at: datetime

_TOKENS = cast(Table, PayToken.__table__)
# Built once with bind parameters and run on the driver (core/driver.py), like every statement here.
_READ_TOKEN = prebuilt(select(_TOKENS.c.pay_token, _TOKENS.c.state, _TOKENS.c.order_no, _TOKENS.c.source,
                              _TOKENS.c.shop_no, _TOKENS.c.first_received_at)
                       .where(_TOKENS.c.id == bindparam("k_id")))


@cache
def _token_update(*states: TokenState) -> Update:
    """An UPDATE of one token (`k_id`) that applies only while it is in one of `states`: every token
    change is conditional, so racing writers change it once. Built once per set of states; one state
    is `=`, not IN (an IN list is expanded into the SQL at every execution: ~40 µs a statement)."""
    state = _TOKENS.c.state
    is_in = state == states[0].value if len(states) == 1 else state.in_([s.value for s in states])
    return prebuilt(update(_TOKENS).where(_TOKENS.c.id == bindparam("k_id"), is_in))


@cache
def _attempt_statement(names: tuple[str, ...]) -> Update:
    """attempts += 1 and `names` set, on a token still received (the first resolver wins)."""
    attempts = {"attempts": _TOKENS.c.attempts + 1}
    return prebuilt(_token_update(TokenState.RECEIVED).values({**attempts, **bound_values(names)}))


# received -> dead once attempts reach the bound (`k_max`); untrusted or dead -> received, attempts reset.
_KILL = (_token_update(TokenState.RECEIVED).where(_TOKENS.c.attempts >= bindparam("k_max"))
         .values(state=TokenState.DEAD.value))
_REOPEN = (_token_update(TokenState.UNTRUSTED, TokenState.DEAD)
           .values(state=TokenState.RECEIVED.value, attempts=0))


def _changed(session: Session, stmt: Update, token_id: int, params: dict[str, object] | None = None) -> bool:
    """Run one of the token's conditional UPDATEs in the session's transaction; True if it changed."""
    return bool(rows_updated(session, stmt, {"k_id": token_id, **(params or {})}))


def _count_attempt(session: Session, token_id: int, **values: object) -> bool:
    """Count one attempt on a token still in state received and set `values`; True if it changed."""
    return _changed(session, _attempt_statement(tuple(values)), token_id, value_params(values))


def _kill_if_exhausted(session: Session, token_id: int, max_attempts: int) -> bool:
    """received -> dead once attempts reach the bound; True only for the call that made the move, so
    the ALERT is raised once however many resolvers fail together."""
    return _changed(session, _KILL, token_id, {"k_max": max_attempts})


def record_failed_attempt(
    source: Session | UnitOfWork, settings: Settings, token_id: int, error: str
) -> bool:
    """Count one failed resolution (any kind: an unexpected exception too); True if the token died.

    For failures the resolution could not record itself (a bug, a crash in between): the task calls
    it, so that no token can crash-loop forever.
    """
    with as_unit_of_work(source)() as session:
        _count_attempt(session, token_id, last_error=error[:_MAX_ERROR])
        return _kill_if_exhausted(session, token_id, settings.max_attempts)


def _confirm(
    client: BankClient, settings: Settings, result: PayQueryResult, ahead: NonceAhead | None = None
) -> Confirmation | None:
    """OrderQuery for the order a paid result names (outside any transaction); None if not needed.
    `ahead`: its Nonce, fetched while the OrderPayQuery was in flight."""
    ts = result.result
    if not settings.confirm_payments or ts is None or ts.status != "S" or not ts.order_no:
        return None
    request = OrderQueryRequest(order_no=ts.order_no)
    try:
        if ahead is not None and confirms_ahead(client):
            query = client.query_orders(request, ahead=ahead)
        else:
            query = client.query_orders(request)
    except BankRejection as exc:
        # A refused confirmation is no verdict on the payment: try again later, like an outage.
        raise BankTransportError(f"OrderQuery to confirm the payment was refused: {exc.code or '?'}",
                                 service="OrderQuery") from None
    return Confirmation(next((r for r in query.orders if r.order_no == ts.order_no), None))


def _ask_bank(
    client: BankClient, settings: Settings, pay_token: str
) -> tuple[PayQueryResult, Confirmation | None]:
    """OrderPayQuery and, for a paid result, its confirming OrderQuery (outside any transaction). The
    confirmation's Nonce is fetched while the OrderPayQuery is in flight: one round trip less."""
    if settings.confirm_payments and confirms_ahead(client):
        ahead: NonceAhead | None = client.confirmation_ahead()
        result = client.pay_query(pay_token, confirm_ahead=ahead)
    else:
        ahead, result = None, client.pay_query(pay_token)
    return result, _confirm(client, settings, result, ahead)


def resolve_token(
    source: Session | UnitOfWork,
    client: BankClient | ClientFor,
    settings: Settings,
    token_id: int,
    *,
    now: datetime | None = None,
    reads: StatementUnit | None = None,
) -> ResolveOutcome:
    """Resolve one stored PayToken with its shop's keys (`client`: that shop's client, or a ClientFor);
    idempotent. `source`: a unit of work (core.db.transaction: one short transaction to read, none
    during the bank calls, one to write) or a Session (all of it in the caller's transaction: tests).
    `reads`: how the token is read instead, as one statement of its own (core.db.statement: the
    worker's, one round trip); a read needs no transaction, the writes are conditional.

    What each ResolveKind means for the token: see the module's docstring. The caller raises the alert
    for protocol_error, dead and review (the task's log line carries the task id and retries; the CLI
    prints it), so it is logged once.
    """
    units = as_unit_of_work(source)
    at = now if now is not None else datetime.now(UTC)
    row = _read_token(units, reads, token_id)
    if row is None:
        log.warning("resolve: no pay token with id %s", token_id, extra={"token_id": token_id})
        return ResolveOutcome(ResolveKind.NOOP, error="no such token")
    if row.state != TokenState.RECEIVED:
        return ResolveOutcome(ResolveKind.NOOP, order_no=row.order_no)
    extra = {"pay_token": short_token(row.pay_token), "token_id": token_id, "shop_no": row.shop_no}
    try:
        shop_client = client_of(client, row.shop_no)
    except UnknownShop as exc:
        return _shop_unknown(units, token_id, exc, extra)
    try:
        result, confirmation = _ask_bank(shop_client, settings, row.pay_token)
    except QPayError as exc:
        return _failed(units, settings, token_id, row.pay_token, exc, at, extra)
    if now is None:  # the moment it settles, after the bank answered (the event's and the token's time)
        at = datetime.now(UTC)
    with units() as session:
        return _settle(session, settings, token_id, row, result, confirmation, at)


def _read_token(units: UnitOfWork, reads: StatementUnit | None, token_id: int) -> _TokenRow | None:
    params = {"k_id": token_id}
    if reads is not None:
        with reads() as one:
            try:
                return _TokenRow(*one.one(_READ_TOKEN, params))
            except NoResultFound:
                return None
    with units() as session:
        found = run(session, _READ_TOKEN, params).first()
    return _TokenRow(*found) if found is not None else None


def _shop_unknown(
    units: UnitOfWork, token_id: int, exc: UnknownShop, extra: dict[str, object]
) -> ResolveOutcome:
    """The shop was removed from the configuration: keep the token (the sweep offers it again), so
    putting the shop back resolves it; nothing is lost or decided without its keys."""
    with units() as session:
        _count_attempt(session, token_id, last_error=str(exc))
    log.warning("resolve %s: %s", extra["pay_token"], exc, extra=extra)
    return ResolveOutcome(ResolveKind.TRANSIENT, error=str(exc))


def _settle(
    session: Session, settings: Settings, token_id: int, token: _TokenRow, result: PayQueryResult,
    confirmation: Confirmation | None, at: datetime,
) -> ResolveOutcome:
    """Settle the order the reply names and record the token's end, in one transaction."""
    src = Source(token.source) if token.source in Source._value2member_map_ else Source.BACKEND
    outcome = settle_from_pay_result(session, settings, result, source=src, pay_token=token.pay_token,
                                     now=at, confirmation=confirmation, shop_no=token.shop_no)
    kind = ResolveKind.of(outcome)
    if kind is ResolveKind.REJECTED:
        _count_attempt(session, token_id, state=TokenState.REJECTED.value, order_no=None, resolved_at=at,
                       last_error=(outcome.reason or "unknown order")[:_MAX_ERROR])
        return ResolveOutcome(kind, error=outcome.reason, order_no=outcome.order_no)
    kept = outcome.kind in (SettleKind.REVIEW, SettleKind.CONFLICT)
    _count_attempt(session, token_id, state=TokenState.RESOLVED.value, order_no=outcome.order_no,
                   last_error=outcome.reason if kept else None, resolved_at=at)
    if kind is ResolveKind.SETTLED:
        return ResolveOutcome(kind, order_no=outcome.order_no, received_at=token.first_received_at)
    return ResolveOutcome(kind, error=outcome.reason, order_no=outcome.order_no)


def _failed(
    units: UnitOfWork, settings: Settings, token_id: int, token: str, exc: QPayError, at: datetime,
    extra: dict[str, object],
) -> ResolveOutcome:
    """Record a failed bank call on the token: transient, rejected, untrusted, or dead at the bound."""
    label = short_token(token)
    with units() as session:
        if isinstance(exc, BankRejection):
            error = f"rejected by the bank: {exc.code or '?'} {exc.description}".strip()[:_MAX_ERROR]
            _count_attempt(session, token_id, last_error=error, state=TokenState.REJECTED.value,
                           resolved_at=at)
            log.warning("resolve %s: %s", label, error, extra=extra)
            return ResolveOutcome(ResolveKind.REJECTED, error=error)
        error = f"{type(exc).__name__}: {exc}"[:_MAX_ERROR]
        if isinstance(exc, BankProtocolError):
            _count_attempt(session, token_id, last_error=error, state=TokenState.UNTRUSTED.value)
            return ResolveOutcome(ResolveKind.PROTOCOL_ERROR, error=error, token_label=label)
        _count_attempt(session, token_id, last_error=error)
        died = _kill_if_exhausted(session, token_id, settings.max_attempts)
    if died:
        return ResolveOutcome(ResolveKind.DEAD, error=error, token_label=label)
    log.warning("resolve %s: transient bank error: %s", label, error, extra=extra)
    return ResolveOutcome(ResolveKind.TRANSIENT, error=error)


def reopen_untrusted(session: Session, token_id: int) -> bool:
    """An operator's deliberate retry: an untrusted or dead token goes back to received with its
    attempts reset (True if it was one).

    Conditional like every token change, so two operators replaying at once reopen it once. The
    last_error stays as the record of why it was parked until the next attempt replaces it.
    """
    return _changed(session, _REOPEN, token_id)


def reopen_parked(session: Session, states: Collection[TokenState]) -> list[tuple[int, str]]:
    """Reopen every token in `states` (an operator replaying all the untrusted or dead ones): the id and
    PayToken of each one this call reopened, oldest first."""
    rows = session.execute(
        select(PayToken.id, PayToken.pay_token).where(PayToken.state.in_([s.value for s in states]))
        .order_by(PayToken.first_received_at)).all()
    return [(token_id, token) for token_id, token in rows if reopen_untrusted(session, token_id)]
