"""The shop notifications' ops commands, under `flask --app webhook events` (docs/notifications.md).

    events new-secret                       print a fresh SHOP_WEBHOOK_SECRET (whsec_<base64>)
    events list [--failed] [--order NO]     events, newest first, with their delivery state
    events show <id>                        one event's body and every delivery attempt
    events redeliver <id> | --failed | --since <time>
                                            send events again (same id, same body), delivered or not

Exit codes as the other commands: 0 done, 1 unknown event or the work failed, 2 usage error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import click
from flask.cli import AppGroup
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import DeliveryAttempt, ShopEvent
from core.services.events import event_name, parse_event_name, reopen
from core.webhook_signing import new_secret
from webhook.deps import deps

events_cli = AppGroup("events", help="Order events for the shop: the push log and redelivery.")

LIST_LIMIT = 200


def _when(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if at else "-"


def delivery_state(row: ShopEvent, pushing: bool) -> str:
    """One phrase for an event's delivery: what `events list` and `orders show` print."""
    if row.state == "pending" and not pushing:
        return "not pushed (no SHOP_WEBHOOK_URL; pull feed only)"
    if row.state == "delivered":
        return f"delivered {_when(row.delivered_at)} (attempts {row.attempts})"
    if row.state == "failed":
        return f"FAILED after {row.attempts} attempts: {row.last_error or '-'}"
    retry = f", next {_when(row.next_attempt_at)}" if row.attempts else ""
    return f"pending (attempts {row.attempts}{retry})" + (f": {row.last_error}" if row.last_error else "")


def order_event_lines(session: Session, order_no: str) -> list[tuple[datetime, str]]:
    """`orders show`'s lines for an order's events: (time, text)."""
    pushing = deps().settings.shop_webhook_url is not None
    rows = session.scalars(select(ShopEvent).where(ShopEvent.order_no == order_no).order_by(ShopEvent.id))
    return [(r.created_at, f"{event_name(r.id):<10} {r.type:<20} {delivery_state(r, pushing)}") for r in rows]


def _fail(message: str, code: int = 1) -> None:
    click.secho(message, fg="red", err=True)
    raise click.exceptions.Exit(code)


def _event_id(value: str) -> int:
    event_id = parse_event_name(value)
    if event_id is None:
        raise click.BadParameter("an event id is evt_<n> (or <n>)", param_hint="EVENT_ID")
    return event_id


@events_cli.command("new-secret")
def events_new_secret() -> None:
    """Print a fresh SHOP_WEBHOOK_SECRET (32 random bytes, whsec_<base64>); give the shop the same value."""
    click.echo(new_secret())


@events_cli.command("list")
@click.option("--failed", is_flag=True, help="only events given up (state failed)")
@click.option("--order", "order_no", default=None, help="only this order's events")
@click.option("--limit", default=LIST_LIMIT, show_default=True, type=click.IntRange(1, 10_000))
def events_list(failed: bool, order_no: str | None, limit: int) -> None:
    """Events, newest first, with their delivery state."""
    pushing = deps().settings.shop_webhook_url is not None
    stmt = select(ShopEvent).order_by(ShopEvent.id.desc()).limit(limit)
    if failed:
        stmt = stmt.where(ShopEvent.state == "failed")
    if order_no:
        stmt = stmt.where(ShopEvent.order_no == order_no)
    with deps().unit_of_work() as session:
        rows = list(session.scalars(stmt))
        for r in rows:
            click.echo(f"{event_name(r.id):<10} {_when(r.created_at)}  {r.order_no:<24} {r.type:<20} "
                       f"{delivery_state(r, pushing)}")
    click.echo(f"{len(rows)} event(s)" + (" (limit reached)" if len(rows) == limit else ""))


@events_cli.command("show")
@click.argument("event_id")
def events_show(event_id: str) -> None:
    """One event: its state, its body (exactly as sent) and every delivery attempt."""
    number = _event_id(event_id)
    pushing = deps().settings.shop_webhook_url is not None
    with deps().unit_of_work() as session:
        row = session.get(ShopEvent, number)
        if row is None:
            _fail(f"event {event_name(number)} not found")
            return
        click.echo(f"event {event_name(row.id)}: {row.type} of order {row.order_no}, written "
                   f"{_when(row.created_at)}")
        click.echo(f"  delivery: {delivery_state(row, pushing)}")
        click.echo("body:")
        click.echo(json.dumps(json.loads(row.body), indent=2, ensure_ascii=False))
        tries = list(session.scalars(select(DeliveryAttempt).where(DeliveryAttempt.event_id == number)
                                     .order_by(DeliveryAttempt.attempt, DeliveryAttempt.id)))
        click.echo(f"attempts: {len(tries)}")
        for t in tries:
            outcome = f"HTTP {t.http_status}" if t.http_status is not None else (t.error or "no answer")
            extra = f"  {t.error}" if t.error and t.http_status is not None else ""
            click.echo(f"  #{t.attempt:<3} {_when(t.at)}  {t.duration_ms:>6} ms  {outcome}{extra}")


def _since(value: str) -> datetime:
    from webhook.cli import parse_duration

    try:
        return datetime.now(UTC) - parse_duration(value)
    except click.BadParameter:
        pass
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("a time (2026-11-29T10:00, UTC unless it says) or an age (30m, 2h, 1d)",
                                 param_hint="--since") from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


@events_cli.command("redeliver")
@click.argument("event_id", required=False)
@click.option("--failed", is_flag=True, help="every event given up (state failed)")
@click.option("--since", "since", default=None, help="every event written since a time or an age (2h)")
def events_redeliver(event_id: str | None, failed: bool, since: str | None) -> None:
    """Send events again, with the same webhook-id and body: one EVENT_ID, --failed, or --since."""
    if sum((event_id is not None, failed, since is not None)) != 1:
        raise click.UsageError("give exactly one of EVENT_ID, --failed or --since")
    if deps().settings.shop_webhook_url is None:
        _fail("SHOP_WEBHOOK_URL is not set: there is nowhere to push (the shop can read GET /api/events)")
    stmt = select(ShopEvent.id).order_by(ShopEvent.id)
    if event_id is not None:
        stmt = stmt.where(ShopEvent.id == _event_id(event_id))
    elif failed:
        stmt = stmt.where(ShopEvent.state == "failed")
    else:
        stmt = stmt.where(ShopEvent.created_at >= _since(since or ""))
    with deps().unit_of_work() as session:
        ids = reopen(session, list(session.scalars(stmt)), now=datetime.now(UTC))
    if not ids:
        _fail(f"event {event_id} not found" if event_id else "no events to redeliver", 1 if event_id else 0)
    send: Callable[[int], bool] | None = getattr(deps().enqueuer, "send_event", None)
    refused = [i for i in ids if send is None or not send(i)]
    click.echo(f"events to redeliver: {len(ids)}; enqueued {len(ids) - len(refused)}")
    if refused:
        _fail(f"{len(refused)} not enqueued (broker unreachable): they are due now and the sweep relays them")
