"""`sweep run` and `shops [check]`: a reconciliation pass in the foreground, and the shops' keys."""

from __future__ import annotations

import click
from flask.cli import AppGroup, with_appcontext

from core.services.sweep import run_sweep
from core.services.sweep_counts import SweepCounts
from core.sinopac.client import BankClient
from core.sinopac.errors import BankRejection, BankTransportError, QPayError
from core.sinopac.messages import OrderQueryRequest
from core.sweeplock import exclusive_pass
from webhook.cli.common import ShopClients, bank, close, enqueuer, fail, record_alone, settings
from webhook.deps import deps

sweep_cli = AppGroup("sweep", help="The reconciliation sweep.")
CHECK_ORDER_NO = "QPAYKEYCHECK"  # the harmless OrderQuery of `shops check`: an OrderNo nobody uses


@sweep_cli.command("run")
def sweep_run() -> None:
    """One sweep pass now, in the foreground; prints its counts (exit 1 if it met errors, or if another
    pass is running: passes never overlap, core/sweeplock.py)."""
    with exclusive_pass(settings().broker_url) as ours:
        if not ours:
            fail("another sweep pass is running (a worker's, or another `sweep run`); nothing was done: "
                 "run it again once that pass has ended (its `sweep:` log line)")
        counts = _one_pass()
    click.echo("sweep: " + ", ".join(f"{k}={v}" for k, v in counts.as_dict().items()))
    for note in counts.notes:
        click.echo(f"  note: {note}")
    if counts.errors:
        fail(f"sweep finished with {counts.errors} error(s); the next pass retries them")


def _one_pass() -> SweepCounts:
    # The sweep calls the bank outside its transactions, so each record gets its own.
    clients = ShopClients(record_alone)
    try:
        # send_resolve is the sweep's Enqueue as it stands: False when the broker is down.
        send_event = getattr(deps().enqueuer, "send_event", None)
        relay = send_event if settings().shop_webhook_url is not None else None
        return run_sweep(deps().unit_of_work, clients, settings(), enqueuer(), relay=relay)
    finally:
        clients.close_all()


@click.group("shops", invoke_without_command=True, cls=AppGroup)
@click.pass_context
@with_appcontext
def shops_cli(ctx: click.Context) -> None:
    """The configured shops with their key fingerprints (never the keys); `shops check` asks the bank."""
    if ctx.invoked_subcommand is not None:
        return
    config = settings()
    for shop in config.all_shops:
        name = f" ({shop.name})" if shop.name else ""
        default = "  [default]" if shop.shop_no == config.shop_no and len(config.all_shops) > 1 else ""
        click.echo(f"{shop.shop_no}{name}{default}")
        for label, keys in shop.key_sets():
            click.echo(f"  {label:<6} keys {keys.fingerprint}")
        if shop.next_keys is None:
            click.echo("  next   -")


def check_key_set(client: BankClient) -> tuple[bool, str]:
    """Does the bank accept this client's signing set? An OrderQuery (its Nonce, then the Order call) for
    an OrderNo nobody uses: any reply that verifies (Status S, or F such as "no data") means it does."""
    try:
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
    active_refused = []
    for shop in settings().all_shops:
        name = f" ({shop.name})" if shop.name else ""
        click.echo(f"{shop.shop_no}{name}")
        client = bank(record_alone, shop.shop_no)
        try:
            for label, keys in shop.key_sets():
                with_set = getattr(client, "with_key_set", None)
                ok, text = check_key_set(with_set(label) if callable(with_set) else client)
                click.echo(f"  {label:<6} keys {keys.fingerprint}: {text}")
                if label == "active" and not ok:
                    active_refused.append(shop.shop_no)
        finally:
            close(client)
    if active_refused:
        fail(f"the bank refuses the active keys of: {', '.join(active_refused)}")
