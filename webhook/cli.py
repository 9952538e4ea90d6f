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
views: parse, open the transaction, call one service function, print the result.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import click
from flask import Flask
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import db
from core.logging import short_token
from core.models import BankCall, Order, OrderEvent, PayToken
from core.settings import Settings
from core.shops import UnknownShop
from core.sinopac.client import BankClient
from core.sinopac.errors import QPayError
from core.sinopac.fields import ORDER_NO_RE
from core.sinopac.messages import OrderQueryRequest
from core.sinopac.types import BankCallRecord
from core.states import Source, TokenState
from webhook.deps import deps
from webhook.events_cli import events_cli, order_event_lines

PROJECT_DIR = Path(__file__).resolve().parent.parent

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "": 60}


# -- plumbing: everything comes from the app's Deps, so tests swap in a fake bank or broker ---------


def _settings() -> Settings:
    return deps().settings


def _tx() -> AbstractContextManager[Session]:
    return deps().unit_of_work()


def _bank(observer: Callable[[BankCallRecord], None], shop_no: str | None = None) -> BankClient:
    return deps().client_factory(observer, shop_no=shop_no)


class _ShopClients:
    """A ClientFor that builds each shop's client on first use, and closes them all afterwards."""

    def __init__(self, observer: Callable[[BankCallRecord], None]) -> None:
        self._observer = observer
        self._built: dict[str, BankClient] = {}

    def __call__(self, shop_no: str) -> BankClient:
        if shop_no not in self._built:
            self._built[shop_no] = _bank(self._observer, _settings().shop_for(shop_no).shop_no)
        return self._built[shop_no]

    def close_all(self) -> None:
        for client in self._built.values():
            _close(client)


_SHOP_OPTION = click.option("--shop", "shop_no", default=None, metavar="SHOP_NO",
                            help="the order's ShopNo (needed when two shops use this OrderNo)")


def _find_order(session: Session, order_no: str, shop_no: str | None) -> Order:
    """The order named on the command line; with several shops sharing the OrderNo, --shop decides."""
    orders = list(session.scalars(select(Order).where(Order.key(order_no, shop_no)).order_by(Order.id)))
    if not orders:
        _fail(f"order {order_no} not found" + (f" in shop {shop_no}" if shop_no else ""))
    if len(orders) > 1:
        shops = ", ".join(o.shop_no for o in orders)
        _fail(f"order {order_no} exists in several shops ({shops}): name one with --shop", 2)
    return orders[0]


def _close(client: BankClient) -> None:
    close = getattr(client, "close", None)
    if callable(close):
        close()


def _enqueuer() -> Callable[[int], bool]:
    return deps().enqueuer.send_resolve


def _fail(message: str, code: int = 1) -> NoReturn:
    click.secho(message, fg="red", err=True)
    raise click.exceptions.Exit(code)


def _store_calls(session: Session, records: list[BankCallRecord]) -> None:
    from core.services.bank_calls import recorder

    record = recorder(session)
    for call in records:
        record(call)
    records.clear()


def parse_duration(value: str) -> timedelta:
    """'90s', '30m', '2h', '1d' (a bare number is minutes)."""
    match = _DURATION.match(value)
    if not match:
        raise click.BadParameter(f"{value!r} is not a duration like 90s, 30m, 2h or 1d")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def _check_order_no(order_no: str) -> str:
    if not ORDER_NO_RE.fullmatch(order_no):
        raise click.BadParameter("an OrderNo is 1-50 letters, digits, '-' or '_'", param_hint="ORDER_NO")
    return order_no


def _when(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if at else "-"


def _money(amount: int | None) -> str:
    return "-" if amount is None else f"{amount / 100:,.2f}"


# -- orders ---------------------------------------------------------------------------------------

orders_cli = AppGroup("orders", help="Inspect and re-check orders.")


@dataclass(frozen=True)
class Line:
    at: datetime
    kind: str
    text: str


def timeline(session: Session, order: Order) -> Iterator[Line]:
    """Events, bank calls and tokens of one order, oldest first."""
    tokens = list(session.scalars(select(PayToken).where(PayToken.order_no == order.order_no,
                                                         PayToken.shop_no == order.shop_no)))
    if order.pay_token and order.pay_token not in {t.pay_token for t in tokens}:
        tokens += list(session.scalars(select(PayToken).where(PayToken.pay_token == order.pay_token)))
    keys = [order.order_no, *(short_token(t.pay_token) for t in tokens)]
    lines: list[Line] = []
    for ev in session.scalars(select(OrderEvent).where(OrderEvent.order_no == order.order_no,
                                                       OrderEvent.shop_no == order.shop_no)):
        move = f"{ev.from_status or '(new)'} -> {ev.to_status}"
        extra = "".join(f"  {k}={v}" for k, v in (("ts_no", ev.ts_no), ("amount", _money(ev.amount)),
                                                   ("detail", ev.detail)) if v not in (None, "-"))
        lines.append(Line(ev.at, "event", f"{move:<24} source={ev.source}{extra}"))
    calls = select(BankCall).where(BankCall.key.in_(keys),
                                   (BankCall.shop_no == order.shop_no) | BankCall.shop_no.is_(None))
    for call in session.scalars(calls):
        http = f" http={call.http_status}" if call.http_status else ""
        keyset = f" keys={call.key_set}" if call.key_set and call.key_set != "active" else ""
        err = f"  {call.error}" if call.error else ""
        text = f"{call.api_service:<14} {call.outcome:<15} {call.duration_ms} ms{http}{keyset}{err}"
        lines.append(Line(call.started_at, "bank", text))
    for tok in tokens:
        lines.append(Line(tok.first_received_at, "token",
                          f"{short_token(tok.pay_token)} received via {tok.source} (receipts={tok.receipts}, "
                          f"attempts={tok.attempts}, state={tok.state})"
                          + (f"  last_error={tok.last_error}" if tok.last_error else "")))
        if tok.resolved_at:
            lines.append(Line(tok.resolved_at, "token", f"{short_token(tok.pay_token)} {tok.state}"))
    return iter(sorted(lines, key=lambda line: line.at))


@orders_cli.command("show")
@click.argument("order_no")
@_SHOP_OPTION
def orders_show(order_no: str, shop_no: str | None) -> None:
    """Status, bank calls, events and tokens of ORDER_NO, as one timeline (UTC)."""
    _check_order_no(order_no)
    with _tx() as session:
        order = _find_order(session, order_no, shop_no)
        pay = "ATM" if order.pay_type == "A" else "card" if order.pay_type == "C" else order.pay_type
        click.echo(f"order {order.order_no}: {order.status.upper()}"
                   + (f" ({order.status_reason})" if order.status_reason else ""))
        click.echo(f"  {pay}, {order.currency} {_money(order.amount)}, shop {_shop_label(order.shop_no)}, "
                   f"TSNo {order.ts_no or '-'}")
        click.echo(f"  created {_when(order.created_at)}  expires {_when(order.expires_at)}  "
                   f"paid {_when(order.paid_at)}  checks {order.check_attempts}"
                   + (f", next {_when(order.next_check_at)}" if order.status == "pending" else ""))
        click.echo("timeline (UTC):")
        for line in timeline(session, order):
            click.echo(f"  {_when(line.at)}  {line.kind:<5}  {line.text}")
        click.echo("shop notifications (UTC):")
        for at, text in order_event_lines(session, order.order_no):
            click.echo(f"  {_when(at)}  {text}")
        if order.status in ("pending", "needs_review"):
            untrusted = _untrusted_count(session)
            if untrusted:
                click.echo(f"note: {untrusted} untrusted pay token(s) (bank reply failed verification) "
                           "belong to no known order; one may be this order's: see `orders stuck`")


def _shop_label(shop_no: str) -> str:
    """ShopNo, with its display name when one is configured (and a warning when it is no longer)."""
    try:
        shop = _settings().shop_for(shop_no)
    except UnknownShop:
        return f"{shop_no} (not configured)"
    return f"{shop_no} ({shop.name})" if shop.name else shop_no


def _untrusted_count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(PayToken)
                              .where(PayToken.state == TokenState.UNTRUSTED.value)) or 0)


@orders_cli.command("stuck")
@click.option("--older-than", "older_than", default="30m", show_default=True,
              help="age: 90s, 30m, 2h, 1d")
def orders_stuck(older_than: str) -> None:
    """Pending orders and unresolved tokens older than --older-than, and orders needing review."""
    age = parse_duration(older_than)
    cutoff = datetime.now(UTC) - age
    with _tx() as session:
        pending = list(session.scalars(
            select(Order).where(Order.status == "pending", Order.created_at <= cutoff)
            .order_by(Order.created_at)))
        review = list(session.scalars(select(Order).where(Order.status == "needs_review").order_by(Order.id)))
        tokens = list(session.scalars(
            select(PayToken).where(PayToken.state == "received", PayToken.first_received_at <= cutoff)
            .order_by(PayToken.first_received_at)))
        untrusted = list(session.scalars(
            select(PayToken).where(PayToken.state == TokenState.UNTRUSTED.value)
            .order_by(PayToken.first_received_at)))
        dead = list(session.scalars(
            select(PayToken).where(PayToken.state == TokenState.DEAD.value)
            .order_by(PayToken.first_received_at)))
        click.echo(f"pending orders older than {older_than}: {len(pending)}")
        for o in pending:
            click.echo(f"  {o.shop_no:<12} {o.order_no:<24} {o.pay_type} {_money(o.amount):>12}  "
                       f"created {_when(o.created_at)}  checks {o.check_attempts}  "
                       f"next {_when(o.next_check_at)}")
        click.echo(f"unresolved pay tokens older than {older_than}: {len(tokens)}")
        for t in tokens:
            error = f"  {t.last_error}" if t.last_error else ""
            click.echo(f"  {t.shop_no:<12} {short_token(t.pay_token):<12} order {t.order_no or '?':<24} "
                       f"attempts {t.attempts}  since {_when(t.first_received_at)}{error}")
        _echo_parked("untrusted", "bank reply failed verification", untrusted)
        _echo_parked("dead", "failed every allowed resolution", dead)
        click.echo(f"orders needing review: {len(review)}")
        for o in review:
            click.echo(f"  {o.shop_no:<12} {o.order_no:<24} {o.status_reason or ''}")



def _echo_parked(state: str, why: str, tokens: list[PayToken]) -> None:
    """Parked tokens (untrusted, dead) wait for an operator: list them and say how to replay them."""
    click.echo(f"{state} pay tokens ({why}; not retried until replayed): {len(tokens)}")
    for t in tokens:
        click.echo(f"  {t.shop_no:<12} {short_token(t.pay_token):<12} attempts {t.attempts}  "
                   f"since {_when(t.first_received_at)}  {t.last_error or ''}")
    if tokens:
        click.echo(f"  once the cause is fixed: flask --app webhook tokens replay --{state} "
                   "(or tokens replay <pay_token>)")

@orders_cli.command("requery")
@click.argument("order_no")
@_SHOP_OPTION
def orders_requery(order_no: str, shop_no: str | None) -> None:
    """Ask the bank about ORDER_NO now (OrderQuery) and settle from its signed answer."""
    from core.services.settlement import settle_from_query_row

    _check_order_no(order_no)
    with _tx() as session:
        order = _find_order(session, order_no, shop_no)
        before, shop_no = order.status, order.shop_no
    records: list[BankCallRecord] = []
    try:
        client = _bank(records.append, shop_no)
    except UnknownShop as exc:
        _fail(f"order {order_no}: {exc}; its keys are needed to ask the bank")
    try:
        result = client.query_orders(OrderQueryRequest(order_no=order_no))
    except QPayError as exc:
        with _tx() as session:
            _store_calls(session, records)
        _fail(f"OrderQuery for {order_no} failed: {exc}")
    finally:
        _close(client)
    rows = [row for row in result.orders if row.order_no == order_no]
    with _tx() as session:
        _store_calls(session, records)
        if not rows:
            _fail(f"the bank has no order {order_no}")
        outcome = settle_from_query_row(session, _settings(), rows[0], source=Source.OPERATOR,
                                        shop_no=shop_no)
        after = session.scalar(select(Order.status).where(Order.key(order_no, shop_no)))
    click.echo(f"bank: PayStatus {rows[0].pay_status or '-'}  TSNo {rows[0].ts_no or '-'}  "
               f"paid {rows[0].pay_date or '-'}")
    verb = "moved" if after != before else "unchanged"
    click.echo(f"order {order_no}: {before} -> {after} ({verb}; {_describe(outcome)})")


def _describe(outcome: Any) -> str:
    for attr in ("kind", "result", "status"):
        value = getattr(outcome, attr, None)
        if value is not None:
            detail = getattr(outcome, "detail", None) or getattr(outcome, "reason", None)
            return f"{value}" + (f": {detail}" if detail else "")
    return str(outcome)


# -- tokens ---------------------------------------------------------------------------------------

tokens_cli = AppGroup("tokens", help="Replay PayTokens.")


@tokens_cli.command("replay")
@click.argument("pay_token", required=False)
@click.option("--now", "inline", is_flag=True, help="resolve here and now instead of enqueueing")
@click.option("--untrusted", "all_untrusted", is_flag=True,
              help="send every untrusted token again (instead of one PAY_TOKEN)")
@click.option("--dead", "all_dead", is_flag=True,
              help="send every dead token again (instead of one PAY_TOKEN)")
@click.option("--shop", "shop_no", default=None, metavar="SHOP_NO",
              help="the token's ShopNo for a token not yet recorded (default: the first shop)")
def tokens_replay(pay_token: str | None, inline: bool, all_untrusted: bool, all_dead: bool,
                  shop_no: str | None) -> None:
    """Record PAY_TOKEN (source operator) and enqueue its resolution, or resolve it inline with --now.

    An untrusted token (its bank reply failed verification) or a dead one (RESOLVE_MAX_ATTEMPTS
    failed resolutions) is never retried automatically; replaying it is the deliberate retry: it goes
    back to received with its attempts reset and is sent again.
    """
    if (all_untrusted or all_dead) == (pay_token is not None):
        raise click.UsageError("give either a PAY_TOKEN or --untrusted / --dead")
    if pay_token is None:
        states = [s for s, on in ((TokenState.UNTRUSTED, all_untrusted), (TokenState.DEAD, all_dead)) if on]
        _replay_untrusted(inline, states)
        return
    from core.services.callbacks import CallbackError, record_callback
    from core.services.resolution import reopen_untrusted

    settings = _settings()
    try:
        shop = settings.shop_for(shop_no).shop_no
    except UnknownShop as exc:
        raise click.BadParameter(str(exc), param_hint="--shop") from None
    try:
        with _tx() as session:
            rec = record_callback(session, shop_no=shop, pay_token=pay_token,
                                  source=Source.OPERATOR, grace=0)
            parked = rec.state in (TokenState.UNTRUSTED, TokenState.DEAD)
            reopened = parked and reopen_untrusted(session, rec.token_id)
            tok = session.get(PayToken, rec.token_id)
            state, order_no, error = (tok.state, tok.order_no, tok.last_error) if tok else ("?", None, None)
    except CallbackError as exc:
        raise click.BadParameter(str(exc), param_hint="PAY_TOKEN") from None
    label = short_token(pay_token)
    if not rec.needs_enqueue and not reopened:
        click.echo(f"token {label} is already {state} (order {order_no or '-'}); nothing to do")
        return
    if reopened:
        click.echo(f"token {label} was {rec.state} ({error or 'no error recorded'}); sending it again")
    if not _send(rec.token_id, label, inline, created=rec.created):
        raise click.exceptions.Exit(1)


def _replay_untrusted(inline: bool, states: list[TokenState]) -> None:
    from core.services.resolution import reopen_untrusted

    what = " or ".join(s.value for s in states)
    with _tx() as session:
        rows = session.execute(
            select(PayToken.id, PayToken.pay_token).where(PayToken.state.in_([s.value for s in states]))
            .order_by(PayToken.first_received_at)).all()
        reopened = [(token_id, short_token(token)) for token_id, token in rows
                    if reopen_untrusted(session, token_id)]
    if not reopened:
        click.echo(f"no {what} pay tokens; nothing to do")
        return
    failed = sum(not _send(token_id, label, inline, created=False) for token_id, label in reopened)
    click.echo(f"{what} tokens sent again: {len(reopened) - failed} of {len(reopened)}")
    if failed:
        _fail(f"{failed} token(s) not resolved or not enqueued (see above): one whose bank reply failed "
              "verification again is untrusted again, one failing again is counted towards dead again; one "
              "the broker did not take is received, and the sweep re-enqueues it")


def _send(token_id: int, label: str, inline: bool, *, created: bool) -> bool:
    """Resolve inline or enqueue one received token; prints the result, True if it worked."""
    from core.services.callbacks import mark_enqueued

    if inline:
        return _resolve_inline(token_id, label)
    if not _enqueuer()(token_id):
        click.secho(f"token {label} recorded, but the broker is unreachable; the sweep will enqueue it again "
                    "(or run again with --now)", fg="red", err=True)
        return False
    with _tx() as session:
        mark_enqueued(session, token_id)
    click.echo(f"token {label} {'recorded and ' if created else ''}enqueued (id {token_id})")
    return True


def _resolve_inline(token_id: int, label: str) -> bool:
    from core.services.resolution import resolve_token

    settings = _settings()
    records: list[BankCallRecord] = []
    clients = _ShopClients(records.append)
    try:
        # The app's unit of work, not one transaction: none is open during the bank calls.
        outcome = resolve_token(deps().unit_of_work, clients, settings, token_id)
    finally:
        clients.close_all()
        with _tx() as session:
            _store_calls(session, records)
    kind = str(getattr(outcome, "kind", outcome))
    error = getattr(outcome, "error", None)
    message = f"token {label}: {kind}" + (f" ({error})" if error else "")
    if kind == "protocol_error":
        message += "; the token is untrusted again"
    if kind == "dead":
        message += f"; the token is dead again ({settings.max_attempts} failed attempts)"
    if kind in {"rejected", "transient", "protocol_error", "dead"}:
        click.secho(message, fg="red", err=True)
        return False
    click.echo(message)
    return True


# -- sweep ----------------------------------------------------------------------------------------

sweep_cli = AppGroup("sweep", help="The reconciliation sweep.")


@sweep_cli.command("run")
def sweep_run() -> None:
    """One sweep pass now, in the foreground; prints its counts (exit 1 if it met errors)."""
    from core.services.bank_calls import recorder
    from core.services.sweep import run_sweep

    def record_alone(call: BankCallRecord) -> None:
        # The sweep calls the bank outside its transactions, so each record gets its own.
        with _tx() as session:
            recorder(session)(call)

    clients = _ShopClients(record_alone)
    try:
        # send_resolve is the sweep's Enqueue as it stands: False when the broker is down.
        send_event = getattr(deps().enqueuer, "send_event", None)
        relay = send_event if _settings().shop_webhook_url is not None else None
        counts = run_sweep(deps().unit_of_work, clients, _settings(), _enqueuer(), relay=relay)
    finally:
        clients.close_all()
    click.echo("sweep: " + ", ".join(f"{k}={v}" for k, v in counts.as_dict().items()))
    for note in counts.notes:
        click.echo(f"  note: {note}")
    if counts.errors:
        _fail(f"sweep finished with {counts.errors} error(s); the next pass retries them")


# -- shops ----------------------------------------------------------------------------------------

CHECK_ORDER_NO = "QPAYKEYCHECK"  # the harmless OrderQuery of `shops check`: an OrderNo nobody uses


@click.group("shops", invoke_without_command=True, cls=AppGroup)
@click.pass_context
@with_appcontext
def shops_cli(ctx: click.Context) -> None:
    """The configured shops with their key fingerprints (never the keys); `shops check` asks the bank."""
    if ctx.invoked_subcommand is not None:
        return
    settings = _settings()
    for shop in settings.all_shops:
        name = f" ({shop.name})" if shop.name else ""
        default = "  [default]" if shop.shop_no == settings.shop_no and len(settings.all_shops) > 1 else ""
        click.echo(f"{shop.shop_no}{name}{default}")
        for label, keys in shop.key_sets():
            click.echo(f"  {label:<6} keys {keys.fingerprint}")
        if shop.next_keys is None:
            click.echo("  next   -")


def check_key_set(client: BankClient) -> tuple[bool, str]:
    """Does the bank accept this client's signing set? A Nonce, then an OrderQuery for an OrderNo
    nobody uses: any reply that verifies (Status S, or F such as "no data") means it does."""
    from core.sinopac.errors import BankRejection, BankTransportError

    try:
        client.nonce()  # type: ignore[attr-defined]
        client.query_orders(OrderQueryRequest(order_no=CHECK_ORDER_NO))
    except BankRejection as exc:
        return True, f"accepted (OrderQuery answered {exc.code or 'F'})"
    except BankTransportError as exc:
        return False, f"bank unreachable ({type(exc).__name__})"
    except QPayError as exc:
        return False, f"refused ({type(exc).__name__}: {exc})"
    return True, "accepted"


@shops_cli.command("check")
def shops_check() -> None:
    """Ask the bank, with each key set of each shop, for a Nonce and a harmless OrderQuery; print which
    sets it accepts (exit 1 if a shop's active set is refused)."""
    from core.services.bank_calls import recorder

    def record_alone(call: BankCallRecord) -> None:
        with _tx() as session:
            recorder(session)(call)

    settings = _settings()
    active_refused = []
    for shop in settings.all_shops:
        name = f" ({shop.name})" if shop.name else ""
        click.echo(f"{shop.shop_no}{name}")
        client = _bank(record_alone, shop.shop_no)
        try:
            for label, keys in shop.key_sets():
                with_set = getattr(client, "with_key_set", None)
                ok, text = check_key_set(with_set(label) if callable(with_set) else client)
                click.echo(f"  {label:<6} keys {keys.fingerprint}: {text}")
                if label == "active" and not ok:
                    active_refused.append(shop.shop_no)
        finally:
            _close(client)
    if active_refused:
        _fail(f"the bank refuses the active keys of: {', '.join(active_refused)}")


# -- db -------------------------------------------------------------------------------------------

db_cli = AppGroup("db", help="The database schema.")


@db_cli.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply the Alembic migrations (what the Procfile's release step runs)."""
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext

    settings = _settings()
    cfg = Config(str(PROJECT_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(PROJECT_DIR / "migrations"))
    engine = db.make_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            current = MigrationContext.configure(conn).get_current_revision()
    except Exception as exc:
        _fail(f"migration failed: {type(exc).__name__}: {exc}")
    finally:
        engine.dispose()
    click.echo(f"database schema at revision {current} ({engine.dialect.name})")


def register_cli(app: Flask) -> None:
    """Attach the ops commands to `app` (create_app calls this)."""
    for group in (orders_cli, tokens_cli, sweep_cli, db_cli, shops_cli, events_cli):
        app.cli.add_command(group)


__all__ = ["parse_duration", "register_cli", "timeline"]
