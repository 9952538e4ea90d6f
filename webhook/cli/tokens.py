"""`tokens replay`: the operator's deliberate retry of a PayToken (one, or every untrusted or dead one)."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from core.logging import short_token
from core.models import PayToken
from core.services.callbacks import CallbackError, mark_enqueued, record_callback
from core.services.outcomes import ResolveKind
from core.services.resolution import reopen_parked, reopen_untrusted, resolve_token
from core.shops import UnknownShop
from core.sinopac.types import BankCallRecord
from core.states import Source, TokenState
from webhook.cli.common import ShopClients, enqueuer, fail, settings, store_calls, tx
from webhook.deps import deps

tokens_cli = AppGroup("tokens", help="Replay PayTokens.")
_PARKED = (TokenState.UNTRUSTED, TokenState.DEAD)


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
        _replay_parked(inline, states)
    else:
        _replay_one(pay_token, inline, shop_no)


def _replay_one(pay_token: str, inline: bool, shop_no: str | None) -> None:
    try:
        shop = settings().shop_for(shop_no).shop_no
    except UnknownShop as exc:
        raise click.BadParameter(str(exc), param_hint="--shop") from None
    try:
        with tx() as session:
            rec = record_callback(session, shop_no=shop, pay_token=pay_token,
                                  source=Source.OPERATOR, grace=0)
            reopened = rec.state in _PARKED and reopen_untrusted(session, rec.token_id)
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


def _replay_parked(inline: bool, states: list[TokenState]) -> None:
    what = " or ".join(s.value for s in states)
    with tx() as session:
        reopened = [(token_id, short_token(token)) for token_id, token in reopen_parked(session, states)]
    if not reopened:
        click.echo(f"no {what} pay tokens; nothing to do")
        return
    failed = sum(not _send(token_id, label, inline, created=False) for token_id, label in reopened)
    click.echo(f"{what} tokens sent again: {len(reopened) - failed} of {len(reopened)}")
    if failed:
        fail(f"{failed} token(s) not resolved or not enqueued (see above): one whose bank reply failed "
             "verification again is untrusted again, one failing again is counted towards dead again; one "
             "the broker did not take is received, and the sweep re-enqueues it")


def _send(token_id: int, label: str, inline: bool, *, created: bool) -> bool:
    """Resolve inline or enqueue one received token; prints the result, True if it worked."""
    if inline:
        return _resolve_inline(token_id, label)
    if not enqueuer()(token_id):
        click.secho(f"token {label} recorded, but the broker is unreachable; the sweep will enqueue it again "
                    "(or run again with --now)", fg="red", err=True)
        return False
    with tx() as session:
        mark_enqueued(session, token_id)
    click.echo(f"token {label} {'recorded and ' if created else ''}enqueued (id {token_id})")
    return True


def _resolve_inline(token_id: int, label: str) -> bool:
    records: list[BankCallRecord] = []
    clients = ShopClients(records.append)
    try:
        # The app's unit of work, not one transaction: none is open during the bank calls.
        outcome = resolve_token(deps().unit_of_work, clients, settings(), token_id)
    finally:
        clients.close_all()
        with tx() as session:
            store_calls(session, records)
    message = f"token {label}: {outcome.kind}" + (f" ({outcome.error})" if outcome.error else "")
    if outcome.kind is ResolveKind.PROTOCOL_ERROR:
        message += "; the token is untrusted again"
    if outcome.kind is ResolveKind.DEAD:
        message += f"; the token is dead again ({settings().max_attempts} failed attempts)"
    if outcome.kind.failed:
        click.secho(message, fg="red", err=True)
        return False
    click.echo(message)
    return True
