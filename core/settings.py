"""Typed settings read from the environment, validated once at start-up.

Every variable is documented in docs/configuration.md. Secrets are wrapped in `Secret`, so
they never appear in a repr, a log line or an exception message. Reading one variable lives in
core.env (numbers, flags, lists), core.endpoints (URLs) and core.variables (the rest).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache

from core import variables
from core.endpoints import (
    DEFAULT_API_BASE_URL,
    DEFAULT_DATABASE_URL,
    DEFAULT_FORWARDED,
    DEFAULT_REDIS_URL,
    api_base_url,
    broker_url_from,
    database_url_from,
    forwarded_allow,
    is_loopback,
)
from core.env import IPNetwork, SettingsError, env_flag, env_float, env_int, env_seconds, ip_networks
from core.secrets import Secret
from core.shops import HASH_KEY_NAMES, ShopCredentials, UnknownShop

__all__ = ["HASH_KEY_NAMES", "Settings", "SettingsError", "ShopCredentials", "UnknownShop", "get_settings",
           "load_settings"]

DEFAULT_CHECK_SCHEDULE = (60.0, 300.0, 900.0, 3600.0, 21600.0)


@dataclass(frozen=True)
class Settings:
    shop: ShopCredentials  # the first (or only) shop: the default where a request names none
    api_base_url: str = DEFAULT_API_BASE_URL
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    # URLs may hold passwords: kept out of repr.
    database_url: str = field(default=DEFAULT_DATABASE_URL, repr=False)
    broker_url: str = field(default=DEFAULT_REDIS_URL, repr=False)
    api_token: Secret | None = None
    public_base_url: str = "http://127.0.0.1:8000"
    # Resolution retries (workers): exponential backoff base and cap in seconds, bound on retries.
    retry_base: float = 2.0
    retry_cap: float = 300.0
    retry_max: int = 8
    # Reconciliation sweep.
    sweep_interval: float = 300.0
    sweep_grace: float = 120.0
    sweep_window_overlap: float = 600.0
    sweep_batch: int = 500
    sweep_concurrency: int = 16  # targeted OrderQuery calls in flight at once (the bank budget still applies)
    check_schedule: tuple[float, ...] = DEFAULT_CHECK_SCHEDULE
    flower_basic_auth: Secret | None = None
    # Shop notifications (core/services/notify.py): where each order event is POSTed, the signing key
    # (whsec_<base64>, raw bytes decoded once here), retry backoff base and cap, and the age at which an
    # undelivered event is given up (seconds).
    shop_webhook_url: str | None = field(default=None, repr=False)  # may hold basic-auth credentials
    shop_webhook_secret: Secret | None = None
    webhook_retry_base: float = 5.0
    webhook_retry_cap: float = 3600.0
    webhook_max_age: float = 3 * 86400.0
    # Bearer token Prometheus sends to the web's GET /metrics (unset: /metrics is open).
    metrics_token: Secret | None = None
    log_level: str = "INFO"
    sandbox_defaults: bool = False
    shops: tuple[ShopCredentials, ...] = ()  # every shop served, `shop` first; () means just `shop`
    # Trust and abuse (issue 13).
    confirm_payments: bool = True  # OrderQuery confirms an OrderPayQuery's paid result before paying
    bank_rate: float = 10.0  # bank requests per second, shared by every process (0: no budget)
    max_attempts: int = 12  # resolutions per PayToken, every failure counted; then the token is dead
    callback_allow: tuple[IPNetwork, ...] = ()  # empty: /qpay/backend open to any address
    forwarded_allow: tuple[IPNetwork, ...] | None = DEFAULT_FORWARDED  # None: '*' (any peer)
    # The customer's pages (webhook/customer.py): checkout links are signed with checkout_secret (unset:
    # no checkout_url, no checkout page); the shop's name and the way back to it once an order is final.
    checkout_secret: Secret | None = None
    shop_name: str | None = None
    shop_return_url: str | None = None  # a template with {order_no}, validated by shop_return_template
    shop_return_delay: int = 5

    @property
    def shop_no(self) -> str:
        return self.shop.shop_no

    @property
    def all_shops(self) -> tuple[ShopCredentials, ...]:
        return self.shops or (self.shop,)

    @property
    def shop_numbers(self) -> frozenset[str]:
        return frozenset(s.shop_no for s in self.all_shops)

    def shop_for(self, shop_no: str | None) -> ShopCredentials:
        """The shop with this ShopNo (None: the default shop); UnknownShop if it is not configured."""
        if shop_no is None:
            return self.shop
        for shop in self.all_shops:
            if shop.shop_no == shop_no:
                return shop
        raise UnknownShop(shop_no)

    @property
    def api_is_local(self) -> bool:
        return is_loopback(self.api_base_url)

    def log_secrets(self) -> tuple[str, ...]:
        """Every configured secret value, revealed only so the log formatter can mask it in every
        process (core.logging.register_secrets): the API, checkout and metrics secrets, Flower's logins
        and the shop notifications' signing secret always, every key set of every shop (active and next)
        unless they are the public sandbox ones."""
        values: list[str] = []
        if not self.sandbox_defaults:
            values += [v for shop in self.all_shops for v in shop.secrets()]
        if self.api_token is not None:
            values.append(self.api_token.reveal())
        if self.checkout_secret is not None:
            values.append(self.checkout_secret.reveal())
        if self.metrics_token is not None:
            values.append(self.metrics_token.reveal())
        if self.flower_basic_auth is not None:
            logins = [p.strip() for p in self.flower_basic_auth.reveal().split(",") if p.strip()]
            values += logins + [login.partition(":")[2] for login in logins]
        if self.shop_webhook_secret is not None:
            values += variables.webhook_secret_values(self.shop_webhook_secret.reveal())
        return tuple(values)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from the environment, failing with a message that names the variable.

    One step per concern, each a `replace` whose fields mypy checks against Settings."""
    env = os.environ if env is None else env
    settings = _places(env)
    settings = _access(env, settings)
    settings = _bank_calls(env, settings)
    settings = _notifications(env, settings)
    settings = _sweep(env, settings)
    return _customer_pages(env, settings)


def _places(env: Mapping[str, str]) -> Settings:
    """Where the bank, its shops (the public sandbox shop for a loopback bank), the database, the
    broker and our own public address are."""
    url = api_base_url(env)
    shops, sandbox_defaults = variables.declared_shops(env, allow_sandbox_defaults=is_loopback(url))
    return Settings(
        shop=shops[0],
        shops=shops,
        api_base_url=url,
        sandbox_defaults=sandbox_defaults,
        database_url=database_url_from(env),
        broker_url=broker_url_from(env),
        public_base_url=(env.get("PUBLIC_BASE_URL") or "http://127.0.0.1:8000").rstrip("/"),
    )


def _access(env: Mapping[str, str], settings: Settings) -> Settings:
    """Who may call us and see what: tokens, Flower's logins, callers and proxies, the log level."""
    metrics_token = env.get("METRICS_TOKEN")
    return replace(
        settings,
        api_token=variables.api_token(env, settings.api_base_url),
        flower_basic_auth=variables.flower_basic_auth(env),
        metrics_token=Secret(metrics_token) if metrics_token else None,
        log_level=variables.log_level(env),
        callback_allow=ip_networks(env, "QPAY_CALLBACK_ALLOW"),
        forwarded_allow=forwarded_allow(env),
    )


def _bank_calls(env: Mapping[str, str], settings: Settings) -> Settings:
    """How bank calls are timed, budgeted, confirmed and retried; the retry cap stays below the
    broker's visibility timeout."""
    retry_base = env_float(env, "RESOLVE_RETRY_BASE", 2.0, 0.01)
    retry_cap = env_float(env, "RESOLVE_RETRY_CAP", 300.0, retry_base)
    if retry_cap > 3000:
        raise SettingsError("RESOLVE_RETRY_CAP must stay well below the broker's visibility timeout (3600 s)")
    return replace(
        settings,
        connect_timeout=env_float(env, "QPAY_CONNECT_TIMEOUT", 5.0, 0.01),
        read_timeout=env_float(env, "QPAY_READ_TIMEOUT", 30.0, 0.01),
        retry_base=retry_base,
        retry_cap=retry_cap,
        retry_max=env_int(env, "RESOLVE_MAX_RETRIES", 8, 0),
        max_attempts=env_int(env, "RESOLVE_MAX_ATTEMPTS", 12, 1),
        check_schedule=env_seconds(env, "CHECK_SCHEDULE", DEFAULT_CHECK_SCHEDULE),
        confirm_payments=env_flag(env, "QPAY_CONFIRM_PAYMENTS", True),
        bank_rate=env_float(env, "QPAY_BANK_RATE", 10.0, 0.0),
    )


def _notifications(env: Mapping[str, str], settings: Settings) -> Settings:
    """The shop's webhook: where, signed with what, retried how long."""
    url = variables.webhook_url(env)
    base = env_float(env, "SHOP_WEBHOOK_RETRY_BASE", 5.0, 0.01)
    return replace(
        settings,
        shop_webhook_url=url,
        shop_webhook_secret=variables.webhook_secret(env, url),
        webhook_retry_base=base,
        webhook_retry_cap=env_float(env, "SHOP_WEBHOOK_RETRY_CAP", 3600.0, base),
        webhook_max_age=env_float(env, "SHOP_WEBHOOK_MAX_AGE", 3 * 86400.0, 1.0),
    )


def _sweep(env: Mapping[str, str], settings: Settings) -> Settings:
    """The reconciliation sweep's rhythm and size."""
    return replace(
        settings,
        sweep_interval=env_float(env, "SWEEP_INTERVAL", 300.0, 0.1),
        sweep_grace=env_float(env, "SWEEP_GRACE", 120.0, 0.0),
        sweep_window_overlap=env_float(env, "SWEEP_WINDOW_OVERLAP", 600.0, 0.0),
        sweep_batch=env_int(env, "SWEEP_BATCH", 500, 1),
        sweep_concurrency=env_int(env, "SWEEP_CONCURRENCY", 16, 1, maximum=64),
    )


def _customer_pages(env: Mapping[str, str], settings: Settings) -> Settings:
    """The customer's checkout page and the way back to the shop."""
    return replace(
        settings,
        checkout_secret=variables.checkout_secret(env),
        shop_name=variables.shop_name(env),
        shop_return_url=variables.shop_return_template(env),
        shop_return_delay=env_int(env, "SHOP_RETURN_DELAY", 5, 0, maximum=variables.MAX_SHOP_RETURN_DELAY),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, loaded on first use (never at import time)."""
    return load_settings()
