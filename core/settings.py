"""Typed settings read from the environment, validated once at start-up.

Every variable is documented in docs/configuration.md. Secrets are wrapped in `Secret`, so
they never appear in a repr, a log line or an exception message.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

from core.secrets import Secret
from core.shops import HASH_KEY_NAMES, ShopCredentials, ShopsError, UnknownShop, shop_from_env, shops_from_env

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_API_BASE_URL = "http://127.0.0.1:8100/QPay.WebAPI/api/"
DEFAULT_DATABASE_URL = f"sqlite:///{PROJECT_DIR / 'var' / 'qpay.db'}"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6479/0"  # the embedded Redis that `make demo` / `make up` start
# A bearer token anyone on the network may try to guess: `openssl rand -hex 32` gives 64 characters.
MIN_API_TOKEN_LENGTH = 32

# Public, published test keys (PROTOCOL vectors, `generated` inputs). They are used only when no key
# is configured AND the bank is the local sandbox; they are worthless against the real bank.
SANDBOX_SHOP_NO = "NA0001_001"
SANDBOX_HASH_KEYS = ("0A2A9C1D5E7B4086", "0BB2C3D4E5F60718", "9E8D7C6B5A493827", "9E1E2D3C4B5A6978")
SANDBOX_KEY_ID = "sandbox-key-id"

__all__ = ["HASH_KEY_NAMES", "Settings", "SettingsError", "ShopCredentials", "UnknownShop", "get_settings",
           "load_settings"]
WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_FORWARDED: tuple[IPNetwork, ...] = (ipaddress.ip_network("127.0.0.1/32"),)


class SettingsError(ShopsError):
    """A variable is missing or malformed; the message names the variable, never its value."""


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
    check_schedule: tuple[float, ...] = (60.0, 300.0, 900.0, 3600.0, 21600.0)
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
        return _is_loopback(self.api_base_url)

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
            values += webhook_secret_values(self.shop_webhook_secret.reveal())
        return tuple(values)


def _is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback  # not "127.example.com"
    except ValueError:
        return False


def ip_networks(env: Mapping[str, str], name: str) -> tuple[IPNetwork, ...]:
    """A comma-separated list of addresses or CIDR ranges (e.g. `203.0.113.0/24,10.0.0.5`)."""
    raw = env.get(name) or ""
    networks = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise SettingsError(f"{name} must be comma-separated IP addresses or CIDR ranges") from None
    return tuple(networks)


def _forwarded_allow(env: Mapping[str, str]) -> tuple[IPNetwork, ...] | None:
    """FORWARDED_ALLOW_IPS as gunicorn reads it: the proxies whose X-Forwarded-* headers count."""
    raw = env.get("FORWARDED_ALLOW_IPS")
    if raw is None or raw.strip() == "":
        return DEFAULT_FORWARDED
    if raw.strip() == "*":
        return None
    return ip_networks(env, "FORWARDED_ALLOW_IPS")


def env_flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    """1/0, true/false, yes/no, on/off (unset or empty: `default`)."""
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be 1 or 0")


def _check_api_base_url(env: Mapping[str, str], url: str) -> None:
    """https only: the bank's replies are what pays orders. Plain http is allowed for a loopback
    address (the local sandbox) or a host named in QPAY_API_HTTP_HOSTS (the compose sandbox)."""
    parsed = urlparse(url)
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        raise SettingsError("QPAY_API_BASE_URL must be https://host/... (an http(s) URL with a host)")
    if parsed.scheme == "https" or _is_loopback(url):
        return
    allowed = {h.strip().lower() for h in (env.get("QPAY_API_HTTP_HOSTS") or "").split(",") if h.strip()}
    if parsed.hostname.lower() not in allowed:
        raise SettingsError(
            "QPAY_API_BASE_URL must be https:// (plain http:// only for a loopback address, or a host "
            "listed in QPAY_API_HTTP_HOSTS)"
        )


def normalize_database_url(url: str) -> str:
    """Heroku (and other hosts) hand out `postgres://...`; SQLAlchemy 2 knows only `postgresql://`.

    Only the scheme changes (`postgres+psycopg2://` keeps its driver); the rest, password included, is
    passed through untouched and never logged.
    """
    scheme, sep, rest = url.partition("://")
    dialect, plus, driver = scheme.partition("+")
    if sep and dialect.lower() == "postgres":
        return f"postgresql{plus}{driver}{sep}{rest}"
    return url


def database_url_from(env: Mapping[str, str], fallback: str | None = None) -> str:
    """DATABASE_URL as every process must use it (services, migrations, scripts): normalised, with
    `fallback` (or the SQLite file under var/) when it is unset."""
    return normalize_database_url(env.get("DATABASE_URL") or fallback or DEFAULT_DATABASE_URL)


def broker_url_from(env: Mapping[str, str]) -> str:
    """The Celery broker: BROKER_URL, else REDIS_URL (the name Heroku's Redis add-on sets), else the
    embedded Redis of `make demo` / `make up`. BROKER_URL wins, so an AMQP broker can sit beside a
    Redis that only holds beat's lock."""
    return env.get("BROKER_URL") or env.get("REDIS_URL") or DEFAULT_REDIS_URL


def env_float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    """A number from the environment (unset or empty: `default`); errors name the variable, not the value."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}")
    return value


def env_int(env: Mapping[str, str], name: str, default: int, minimum: int = 0,
            maximum: int | None = None) -> int:
    """A whole number from the environment, like `env_float`."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name} must be at most {maximum}")
    return value


def _schedule(env: Mapping[str, str], name: str, default: tuple[float, ...]) -> tuple[float, ...]:
    raw = env.get(name)
    if not raw:
        return default
    try:
        steps = tuple(float(part) for part in raw.split(","))
    except ValueError:
        raise SettingsError(f"{name} must be comma-separated seconds, e.g. 60,300,900") from None
    if not steps or any(s <= 0 for s in steps):
        raise SettingsError(f"{name} must list positive seconds")
    return steps


MIN_CHECKOUT_SECRET = 32
MAX_SHOP_RETURN_DELAY = 600
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def shop_return_template(env: Mapping[str, str]) -> str | None:
    """SHOP_RETURN_URL: an absolute http(s) URL whose only placeholder is `{order_no}`.

    Fixed by the operator, never taken from a request, so the pages cannot be made to redirect elsewhere.
    """
    raw = (env.get("SHOP_RETURN_URL") or "").strip()
    if not raw:
        return None
    parsed = urlparse(raw.replace("{order_no}", "ORDER"))
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        raise SettingsError("SHOP_RETURN_URL must be an absolute http or https URL")
    rest = raw.replace("{order_no}", "")
    if "{" in rest or "}" in rest or _CONTROL.search(raw) or " " in raw:
        raise SettingsError("SHOP_RETURN_URL may hold only the placeholder {order_no}, and no spaces")
    return raw


def _checkout_secret(env: Mapping[str, str]) -> Secret | None:
    raw = env.get("CHECKOUT_SECRET") or ""
    if not raw:
        return None
    if len(raw) < MIN_CHECKOUT_SECRET:
        raise SettingsError(f"CHECKOUT_SECRET must be at least {MIN_CHECKOUT_SECRET} characters "
                            "(e.g. python -c 'import secrets; print(secrets.token_hex(32))')")
    return Secret(raw)


def _shop_name(env: Mapping[str, str]) -> str | None:
    name = (env.get("SHOP_NAME") or "").strip()
    if len(name) > 60 or _CONTROL.search(name):
        raise SettingsError("SHOP_NAME must be at most 60 characters, without control characters")
    return name or None


def _shops(env: Mapping[str, str], allow_sandbox_defaults: bool) -> tuple[tuple[ShopCredentials, ...], bool]:
    names = (*HASH_KEY_NAMES, "QPAY_KEY_ID", "QPAY_SHOP_NO", "QPAY_SHOPS", "QPAY_SHOPS_FILE")
    present = [n for n in names if env.get(n)]
    if not present and allow_sandbox_defaults:
        keys = tuple(Secret(k) for k in SANDBOX_HASH_KEYS)
        return (ShopCredentials(SANDBOX_SHOP_NO, keys, Secret(SANDBOX_KEY_ID)),), True  # type: ignore[arg-type]
    if not present:
        # Nothing declared: name the single-shop variable first, as before several shops existed.
        shop_from_env(env)
    try:
        return tuple(shops_from_env(env)), False
    except ShopsError as exc:
        raise SettingsError(str(exc)) from None


def _webhook_secret(env: Mapping[str, str], url: str | None) -> Secret | None:
    """SHOP_WEBHOOK_SECRET (`whsec_` + base64 of the key bytes): required when SHOP_WEBHOOK_URL is set."""
    raw = (env.get("SHOP_WEBHOOK_SECRET") or "").strip()
    if not raw:
        if url:
            raise SettingsError("SHOP_WEBHOOK_SECRET is required when SHOP_WEBHOOK_URL is set "
                                "(`SHOP_WEBHOOK_URL= flask --app webhook events new-secret` prints one)")
        return None
    if not raw.startswith(WEBHOOK_SECRET_PREFIX):
        raise SettingsError(f"SHOP_WEBHOOK_SECRET must start with {WEBHOOK_SECRET_PREFIX}")
    try:
        key = base64.b64decode(raw[len(WEBHOOK_SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise SettingsError("SHOP_WEBHOOK_SECRET is not valid base64 after whsec_") from None
    if not 24 <= len(key) <= 64:
        raise SettingsError("SHOP_WEBHOOK_SECRET must hold 24 to 64 bytes of key")
    return Secret(raw)


def webhook_secret_values(secret: str) -> tuple[str, str]:
    """What the log formatter masks of SHOP_WEBHOOK_SECRET: the value as configured and its bare base64."""
    return secret, secret.removeprefix(WEBHOOK_SECRET_PREFIX)


def _webhook_url(env: Mapping[str, str]) -> str | None:
    url = (env.get("SHOP_WEBHOOK_URL") or "").strip()
    if not url:
        return None
    parsed = urlparse(url)
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        raise SettingsError("SHOP_WEBHOOK_URL must be an http(s) URL")
    return url


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from the environment, failing with a message that names the variable."""
    env = os.environ if env is None else env
    api_base_url = env.get("QPAY_API_BASE_URL") or DEFAULT_API_BASE_URL
    if not api_base_url.endswith("/"):
        api_base_url += "/"
    _check_api_base_url(env, api_base_url)
    try:
        shops, sandbox_defaults = _shops(env, allow_sandbox_defaults=_is_loopback(api_base_url))
    except ShopsError as exc:
        raise SettingsError(str(exc)) from None
    token = env.get("API_TOKEN")
    if token and len(token) < MIN_API_TOKEN_LENGTH and not _is_loopback(api_base_url):
        raise SettingsError(
            f"API_TOKEN must be at least {MIN_API_TOKEN_LENGTH} characters (e.g. `openssl rand -hex 32`); "
            "shorter ones are accepted only against the local sandbox (a loopback QPAY_API_BASE_URL)"
        )
    metrics_token = env.get("METRICS_TOKEN")
    flower_auth = env.get("FLOWER_BASIC_AUTH")
    if flower_auth and ":" not in flower_auth:
        raise SettingsError("FLOWER_BASIC_AUTH must be user:password")
    level = env.get("LOG_LEVEL", "INFO").upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise SettingsError("LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
    retry_base = env_float(env, "RESOLVE_RETRY_BASE", 2.0, 0.01)
    retry_cap = env_float(env, "RESOLVE_RETRY_CAP", 300.0, retry_base)
    webhook_url = _webhook_url(env)
    webhook_base = env_float(env, "SHOP_WEBHOOK_RETRY_BASE", 5.0, 0.01)
    if retry_cap > 3000:
        raise SettingsError("RESOLVE_RETRY_CAP must stay well below the broker's visibility timeout (3600 s)")
    return Settings(
        shop=shops[0],
        shops=shops,
        api_base_url=api_base_url,
        connect_timeout=env_float(env, "QPAY_CONNECT_TIMEOUT", 5.0, 0.01),
        read_timeout=env_float(env, "QPAY_READ_TIMEOUT", 30.0, 0.01),
        database_url=database_url_from(env),
        broker_url=broker_url_from(env),
        api_token=Secret(token) if token else None,
        public_base_url=(env.get("PUBLIC_BASE_URL") or "http://127.0.0.1:8000").rstrip("/"),
        retry_base=retry_base,
        retry_cap=retry_cap,
        retry_max=env_int(env, "RESOLVE_MAX_RETRIES", 8, 0),
        sweep_interval=env_float(env, "SWEEP_INTERVAL", 300.0, 0.1),
        sweep_grace=env_float(env, "SWEEP_GRACE", 120.0, 0.0),
        sweep_window_overlap=env_float(env, "SWEEP_WINDOW_OVERLAP", 600.0, 0.0),
        sweep_batch=env_int(env, "SWEEP_BATCH", 500, 1),
        sweep_concurrency=env_int(env, "SWEEP_CONCURRENCY", 16, 1, maximum=64),
        check_schedule=_schedule(env, "CHECK_SCHEDULE", (60.0, 300.0, 900.0, 3600.0, 21600.0)),
        flower_basic_auth=Secret(flower_auth) if flower_auth else None,
        shop_webhook_url=webhook_url,
        shop_webhook_secret=_webhook_secret(env, webhook_url),
        webhook_retry_base=webhook_base,
        webhook_retry_cap=env_float(env, "SHOP_WEBHOOK_RETRY_CAP", 3600.0, webhook_base),
        webhook_max_age=env_float(env, "SHOP_WEBHOOK_MAX_AGE", 3 * 86400.0, 1.0),
        metrics_token=Secret(metrics_token) if metrics_token else None,
        log_level=level,
        sandbox_defaults=sandbox_defaults,
        confirm_payments=env_flag(env, "QPAY_CONFIRM_PAYMENTS", True),
        bank_rate=env_float(env, "QPAY_BANK_RATE", 10.0, 0.0),
        max_attempts=env_int(env, "RESOLVE_MAX_ATTEMPTS", 12, 1),
        callback_allow=ip_networks(env, "QPAY_CALLBACK_ALLOW"),
        forwarded_allow=_forwarded_allow(env),
        checkout_secret=_checkout_secret(env),
        shop_name=_shop_name(env),
        shop_return_url=shop_return_template(env),
        shop_return_delay=env_int(env, "SHOP_RETURN_DELAY", 5, 0, maximum=MAX_SHOP_RETURN_DELAY),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, loaded on first use (never at import time)."""
    return load_settings()
