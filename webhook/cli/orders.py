"""`orders show | stuck | requery`: what happened to an order, what is not moving, and asking the bank
again. The reading is core's (core/services/timeline.py, stuck.py); this is layout."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import click
from flask.cli import AppGroup
from sqlalchemy.orm import Session

from core.logging import short_token
from core.models import Order, PayToken
from core.services.orders import get_order
from core.services.outcomes import SettleOutcome
from core.services.settlement import settle_from_query_row
from core.services.stuck import stuck_work, untrusted_count
from core.services.timeline import order_record
from core.shops import UnknownShop
from core.sinopac.errors import QPayError
from core.sinopac.messages import OrderQueryRequest
from core.sinopac.types import BankCallRecord, OrderQueryResult
from core.states import OrderStatus, Source
from webhook.cli.common import (
    bank,
    close,
    fail,
    money,
    named_order,
    order_command,
    parse_duration,
    settings,
    shop_label,
    store_calls,
    tx,
    when,
)
from webhook.events_cli import order_event_lines

orders_cli = AppGroup("orders", help="Inspect and re-check orders.")
_PAY_TYPES = {"A": "ATM", "C": "card"}


@dataclass(frozen=True)
class Line:
    at: datetime
    kind: str
    text: str


def timeline(session: Session, order: Order) -> Iterator[Line]:
    """Events, bank calls and tokens of one order, oldest first."""
    record = order_record(session, order)
    lines: list[Line] = []
    for ev in record.events:
        move = f"{ev.from_status or '(new)'} -> {ev.to_status}"
        extra = "".join(f"  {k}={v}" for k, v in (("ts_no", ev.ts_no), ("amount", money(ev.amount)),
                                                   ("detail", ev.detail)) if v not in (None, "-"))
        lines.append(Line(ev.at, "event", f"{move:<24} source={ev.source}{extra}"))
    for call in record.calls:
        http = f" http={call.http_status}" if call.http_status else ""
        keyset = f" keys={call.key_set}" if call.key_set and call.key_set != "active" else ""
        err = f"  {call.error}" if call.error else ""
        text = f"{call.api_service:<14} {call.outcome:<15} {call.duration_ms} ms{http}{keyset}{err}"
        lines.append(Line(call.started_at, "bank", text))
    for tok in record.tokens:
        lines.append(Line(tok.first_received_at, "token",
                          f"{short_token(tok.pay_token)} received via {tok.source} (receipts={tok.receipts}, "
                          f"attempts={tok.attempts}, state={tok.state})"
                          + (f"  last_error={tok.last_error}" if tok.last_error else "")))
        if tok.resolved_at:
            lines.append(Line(tok.resolved_at, "token", f"{short_token(tok.pay_token)} {tok.state}"))
    return iter(sorted(lines, key=lambda line: line.at))


@order_command(orders_cli, "show")
def orders_show(order_no: str, shop_no: str | None) -> None:
    """Status, bank calls, events and tokens of ORDER_NO, as one timeline (UTC)."""
    with named_order(order_no, shop_no) as (session, order):
        pay = _PAY_TYPES.get(order.pay_type, order.pay_type)
        click.echo(f"order {order.order_no}: {order.status.upper()}"
                   + (f" ({order.status_reason})" if order.status_reason else ""))
        click.echo(f"  {pay}, {order.currency} {money(order.amount)}, shop {shop_label(order.shop_no)}, "
                   f"TSNo {order.ts_no or '-'}")
        click.echo(f"  created {when(order.created_at)}  expires {when(order.expires_at)}  "
                   f"paid {when(order.paid_at)}  checks {order.check_attempts}"
                   + (f", next {when(order.next_check_at)}" if order.status == OrderStatus.PENDING else ""))
        click.echo("timeline (UTC):")
        for line in timeline(session, order):
            click.echo(f"  {when(line.at)}  {line.kind:<5}  {line.text}")
        click.echo("shop notifications (UTC):")
        for at, text in order_event_lines(session, order.order_no):
            click.echo(f"  {when(at)}  {text}")
        if order.status in (OrderStatus.PENDING, OrderStatus.NEEDS_REVIEW):
            untrusted = untrusted_count(session)
            if untrusted:
                click.echo(f"note: {untrusted} untrusted pay token(s) (bank reply failed verification) "
                           "belong to no known order; one may be this order's: see `orders stuck`")


@orders_cli.command("stuck")
@click.option("--older-than", "older_than", default="30m", show_default=True,
              help="age: 90s, 30m, 2h, 1d")
def orders_stuck(older_than: str) -> None:
    """Pending orders and unresolved tokens older than --older-than, and orders needing review."""
    cutoff = datetime.now(UTC) - parse_duration(older_than)
    with tx() as session:
        stuck = stuck_work(session, cutoff)
        click.echo(f"pending orders older than {older_than}: {len(stuck.pending)}")
        for o in stuck.pending:
            click.echo(f"  {o.shop_no:<12} {o.order_no:<24} {o.pay_type} {money(o.amount):>12}  "
                       f"created {when(o.created_at)}  checks {o.check_attempts}  "
                       f"next {when(o.next_check_at)}")
        click.echo(f"unresolved pay tokens older than {older_than}: {len(stuck.unresolved)}")
        for t in stuck.unresolved:
            error = f"  {t.last_error}" if t.last_error else ""
            click.echo(f"  {t.shop_no:<12} {short_token(t.pay_token):<12} order {t.order_no or '?':<24} "
                       f"attempts {t.attempts}  since {when(t.first_received_at)}{error}")
        _echo_parked("untrusted", "bank reply failed verification", stuck.untrusted)
        _echo_parked("dead", "failed every allowed resolution", stuck.dead)
        click.echo(f"orders needing review: {len(stuck.review)}")
        for o in stuck.review:
            click.echo(f"  {o.shop_no:<12} {o.order_no:<24} {o.status_reason or ''}")


def _echo_parked(state: str, why: str, tokens: list[PayToken]) -> None:
    """Parked tokens (untrusted, dead) wait for an operator: list them and say how to replay them."""
    click.echo(f"{state} pay tokens ({why}; not retried until replayed): {len(tokens)}")
    for t in tokens:
        click.echo(f"  {t.shop_no:<12} {short_token(t.pay_token):<12} attempts {t.attempts}  "
                   f"since {when(t.first_received_at)}  {t.last_error or ''}")
    if tokens:
        click.echo(f"  once the cause is fixed: flask --app webhook tokens replay --{state} "
                   "(or tokens replay <pay_token>)")


@order_command(orders_cli, "requery")
def orders_requery(order_no: str, shop_no: str | None) -> None:
    """Ask the bank about ORDER_NO now (OrderQuery) and settle from its signed answer."""
    with named_order(order_no, shop_no) as (_session, order):
        before, shop_no = order.status, order.shop_no
    records: list[BankCallRecord] = []
    result = _query(order_no, shop_no, records)
    row = next((r for r in result.orders if r.order_no == order_no), None)
    if row is None:  # the call is on record all the same: committed before the command fails
        with tx() as session:
            store_calls(session, records)
        fail(f"the bank has no order {order_no}")
    with tx() as session:
        store_calls(session, records)
        outcome = settle_from_query_row(session, settings(), row, source=Source.OPERATOR, shop_no=shop_no)
        moved = get_order(session, order_no, shop_no)
        after = moved.status if moved is not None else None
    click.echo(f"bank: PayStatus {row.pay_status or '-'}  TSNo {row.ts_no or '-'}  "
               f"paid {row.pay_date or '-'}")
    verb = "moved" if after != before else "unchanged"
    click.echo(f"order {order_no}: {before} -> {after} ({verb}; {_describe(outcome)})")


def _query(order_no: str, shop_no: str, records: list[BankCallRecord]) -> OrderQueryResult:
    """OrderQuery with the shop's keys, no transaction open meanwhile; exit 1 (the calls stored) if
    the bank cannot be asked."""
    try:
        client = bank(records.append, shop_no)
    except UnknownShop as exc:
        fail(f"order {order_no}: {exc}; its keys are needed to ask the bank")
    try:
        return client.query_orders(OrderQueryRequest(order_no=order_no))
    except QPayError as exc:
        with tx() as session:
            store_calls(session, records)
        fail(f"OrderQuery for {order_no} failed: {exc}")
    finally:
        close(client)


def _describe(outcome: SettleOutcome) -> str:
    return f"{outcome.kind}" + (f": {outcome.reason}" if outcome.reason else "")
