"""The web entrypoint: `gunicorn 'webhook:create_app()'` and `flask --app webhook ...`.

Nothing happens at import time; create_app builds everything (settings, logging, the broker
sender, the bank client factory) so tests can pass their own.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from concurrent.futures import ThreadPoolExecutor

from flask import Flask
from flask.json.provider import DefaultJSONProvider

from core.budget import bank_budget
from core.logging import configure_logging, install_record_factory, register_settings_secrets
from core.services.events import set_publisher
from core.services.units import UnitOfWork
from core.settings import Settings, get_settings
from core.sinopac.client import BankClient, QPayClient
from core.sinopac.transport import bank_session
from core.sinopac.types import BankCallRecord, Observer
from metrics import defs as metrics
from webhook.deps import ClientFactory, Database, Deps
from webhook.enqueue import CeleryEnqueuer, Enqueuer

__all__ = ["create_app"]

MAX_CONTENT_LENGTH = 64 * 1024  # any body; the callback endpoints cap theirs at 4 KiB
BANK_POOL_SIZE = 16  # bank connections kept by the web process (its OrderCreate calls)


def _bank_client_factory(settings: Settings) -> ClientFactory:
    """One pooled HTTP session per app; a client per request so its observer collects that request's
    bank calls (stored after the call, outside any transaction)."""
    http = bank_session(settings.api_base_url, BANK_POOL_SIZE)
    budget = bank_budget(settings)  # the web's OrderCreate calls share the workers' budget

    def factory(observer: Observer, shop_no: str | None = None) -> BankClient:
        return QPayClient(settings, shop=settings.shop_for(shop_no), http=http, observer=observer,
                          budget=budget)

    return factory


def _counting(factory: ClientFactory) -> ClientFactory:
    """Every bank call of the web (the orders API) also moves the bank metrics, whatever the factory."""

    def counting_factory(observer: Observer, shop_no: str | None = None) -> BankClient:
        def observe(record: BankCallRecord) -> None:
            metrics.bank_call(record)
            observer(record)

        return factory(observe, shop_no=shop_no)

    return counting_factory


class _JSON(DefaultJSONProvider):
    """Answers keep the order their fields were written in (the documented field order)."""

    sort_keys = False


def create_app(
    settings: Settings | None = None,
    *,
    enqueuer: Enqueuer | None = None,
    client_factory: ClientFactory | None = None,
    unit_of_work: UnitOfWork | None = None,
    configure_logs: bool = True,
) -> Flask:
    """The web app; every dependency can be passed in (tests), or is built from the settings."""
    settings = settings or get_settings()
    _start_logging(settings, configure_logs)
    app = Flask(__name__, static_folder=None)
    app.config.update(MAX_CONTENT_LENGTH=MAX_CONTENT_LENGTH, JSON_SORT_KEYS=False)
    app.json = _JSON(app)
    app.jinja_env.trim_blocks = app.jinja_env.lstrip_blocks = True  # the customer pages' templates/
    app.extensions["qpay"] = Deps(
        settings=settings,
        shops=settings.shop_numbers,
        unit_of_work=unit_of_work or Database(settings.database_url),
        enqueuer=enqueuer or CeleryEnqueuer(settings.broker_url),
        client_factory=_counting(client_factory or _bank_client_factory(settings)),
        probes=ThreadPoolExecutor(max_workers=4, thread_name_prefix="readyz"),
    )

    # Events committed here (an order created, an operator's decision) start their delivery at once.
    send_event = getattr(app.extensions["qpay"].enqueuer, "send_event", None)
    set_publisher(send_event if settings.shop_webhook_url is not None else None)

    _install_views(app)
    from webhook.ingest import CallbackIngest

    app.wsgi_app = CallbackIngest(app, app.wsgi_app)  # type: ignore[method-assign]
    return app


def _start_logging(settings: Settings, configure_logs: bool) -> None:
    """JSON lines with the settings' secrets masked, before the app can log anything."""
    if configure_logs:
        configure_logging(settings.log_level)
    install_record_factory()
    register_settings_secrets(settings)
    if settings.api_token is not None and settings.checkout_secret is None:  # orders API open, no links
        logging.getLogger(__name__).warning(
            "CHECKOUT_SECRET is not set: orders get no checkout_url and /checkout pages answer 404")


def _install_views(app: Flask) -> None:
    """The hooks, blueprints and CLI; imported here, so that importing `webhook` builds nothing."""
    from webhook import callbacks, customer, events_api, health, orders_api, scrape
    from webhook.errors import register_error_handlers
    from webhook.headers import register_security_headers
    from webhook.requestlog import register_request_logging

    register_request_logging(app)
    register_security_headers(app)
    register_error_handlers(app)
    app.register_blueprint(callbacks.bp)
    app.register_blueprint(orders_api.bp)
    app.register_blueprint(events_api.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(customer.bp)
    scrape.install(app)
    if importlib.util.find_spec("webhook.cli") is not None:
        importlib.import_module("webhook.cli").register_cli(app)
