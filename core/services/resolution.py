"""Resolving a PayToken: ask the bank what it means (OrderPayQuery), then settle the order it names.

No row lock is taken before the bank call: read the token, call the bank, then make conditional
UPDATEs (`... WHERE state = 'received'`, the order's `... WHERE status = <current>`). Any number of
concurrent resolvers of one token therefore end with one transition and one event.

A reply that fails verification parks the token as `untrusted`: the sweep does not re-enqueue it
(no blind retry), the sweep's OrderQuery still settles its order, and `reopen_untrusted` (the ops
CLI's replay) is the deliberate way back to `received`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.models import PayToken
from core.services.settlement import settle_from_pay_result
from core.settings import Settings
from core.shops import UnknownShop
from core.sinopac.client import client_of
from core.sinopac.errors import BankProtocolError, BankRejection, BankTransportError
from core.states import Source, TokenState

if TYPE_CHECKING:
    from core.sinopac.client import BankClient, ClientFor

log = logging.getLogger(__name__)

ResolveKind = Literal["settled", "noop", "review", "rejected", "transient", "protocol_error"]
_MAX_ERROR = 500


@dataclass(frozen=True)
class ResolveOutcome:
    kind: ResolveKind
    error: str | None = None
    order_no: str | None = None
    token_label: str | None = None  # the PayToken shortened for logs (set for protocol_error)
    received_at: datetime | None = None  # the token's first receipt (set for settled: the metrics' start)


def _short(token: str) -> str:
    return token[:8] + "…"


def _update_token(session: Session, token_id: int, **values: object) -> bool:
    """A conditional update: only a token still in state received changes (first resolver wins)."""
    result = session.execute(
        update(PayToken)
        .where(PayToken.id == token_id, PayToken.state == TokenState.RECEIVED.value)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def resolve_token(
    session: Session,
    client: BankClient | ClientFor,
    settings: Settings,
    token_id: int,
    *,
    now: datetime | None = None,
) -> ResolveOutcome:
    """Resolve one stored PayToken with its shop's keys (`client`: that client, or a ClientFor);
    idempotent, and never commits (the task does).

    transient (timeouts, 5xx, 429): attempts and last_error recorded, the caller retries later.
    rejected: the bank refused the token (BankRejection) or it names no order of ours.
    protocol_error: the reply cannot be trusted (bad Sign, undecryptable, malformed): the token becomes
    untrusted with last_error set, so nothing retries it blindly. The caller raises the alert (the
    task's log line carries the task id and retries; the CLI prints it), so it is logged once.
    """
    at = now if now is not None else datetime.now(UTC)
    row = session.execute(
        select(
            PayToken.pay_token, PayToken.state, PayToken.order_no, PayToken.source, PayToken.shop_no,
            PayToken.first_received_at,
        ).where(PayToken.id == token_id)
    ).first()
    if row is None:
        log.warning("resolve: no pay token with id %s", token_id, extra={"token_id": token_id})
        return ResolveOutcome("noop", error="no such token")
    if row.state != TokenState.RECEIVED:
        return ResolveOutcome("noop", order_no=row.order_no)
    token = row.pay_token
    extra = {"pay_token": _short(token), "token_id": token_id, "shop_no": row.shop_no}
    attempts = PayToken.attempts + 1
    try:
        shop_client = client_of(client, row.shop_no)
    except UnknownShop as exc:
        # The shop was removed from the configuration: keep the token (the sweep offers it again), so
        # putting the shop back resolves it; nothing is lost or decided without its keys.
        error = str(exc)
        _update_token(session, token_id, attempts=attempts, last_error=error)
        log.warning("resolve %s: %s", _short(token), error, extra=extra)
        return ResolveOutcome("transient", error=error)
    try:
        result = shop_client.pay_query(token)
    except BankTransportError as exc:
        error = f"{type(exc).__name__}: {exc}"[:_MAX_ERROR]
        _update_token(session, token_id, attempts=attempts, last_error=error)
        log.warning("resolve %s: transient bank error: %s", _short(token), error, extra=extra)
        return ResolveOutcome("transient", error=error)
    except BankRejection as exc:
        error = f"rejected by the bank: {exc.code or '?'} {exc.description}".strip()[:_MAX_ERROR]
        _update_token(
            session, token_id, attempts=attempts, last_error=error, state=TokenState.REJECTED.value,
            resolved_at=at,
        )
        log.warning("resolve %s: %s", _short(token), error, extra=extra)
        return ResolveOutcome("rejected", error=error)
    except BankProtocolError as exc:
        error = f"{type(exc).__name__}: {exc}"[:_MAX_ERROR]
        untrusted = TokenState.UNTRUSTED.value
        _update_token(session, token_id, attempts=attempts, last_error=error, state=untrusted)
        return ResolveOutcome("protocol_error", error=error, token_label=_short(token))

    source = Source(row.source) if row.source in Source._value2member_map_ else Source.BACKEND
    outcome = settle_from_pay_result(session, settings, result, source=source, pay_token=token, now=at,
                                     shop_no=row.shop_no)
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


def reopen_untrusted(session: Session, token_id: int) -> bool:
    """An operator's deliberate retry: an untrusted token goes back to received (True if it was one).

    Conditional like every token change, so two operators replaying at once reopen it once. The
    last_error stays as the record of why it was parked until the next attempt replaces it.
    """
    result = session.execute(
        update(PayToken)
        .where(PayToken.id == token_id, PayToken.state == TokenState.UNTRUSTED.value)
        .values(state=TokenState.RECEIVED.value)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
