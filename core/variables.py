"""The variables that need more than a number: shops, tokens, the shop's webhook and customer pages.

Each reader validates one variable (or a pair that only make sense together) and fails with a
SettingsError that names it, never its value. core.settings.load_settings assembles them.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from urllib.parse import urlparse

from core.endpoints import is_loopback
from core.env import SettingsError
from core.secrets import Secret
from core.shops import HASH_KEY_NAMES, ShopCredentials, ShopsError, shop_from_env, shops_from_env

__all__ = ["MAX_SHOP_RETURN_DELAY", "MIN_API_TOKEN_LENGTH", "SANDBOX_HASH_KEYS", "SANDBOX_KEY_ID",
           "SANDBOX_SHOP_NO", "WEBHOOK_SECRET_PREFIX", "api_token", "checkout_secret", "declared_shops",
           "flower_basic_auth", "log_level", "shop_name", "shop_return_template", "webhook_secret",
           "webhook_secret_values", "webhook_url"]

# A bearer token anyone on the network may try to guess: `openssl rand -hex 32` gives 64 characters.
MIN_API_TOKEN_LENGTH = 32
MIN_CHECKOUT_SECRET = 32
MAX_SHOP_RETURN_DELAY = 600
WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# Public, published test keys (PROTOCOL vectors, `generated` inputs). They are used only when no key
# is configured AND the bank is the local sandbox; they are worthless against the real bank.
SANDBOX_SHOP_NO = "NA0001_001"
SANDBOX_HASH_KEYS = ("0A2A9C1D5E7B4086", "0BB2C3D4E5F60718", "9E8D7C6B5A493827", "9E1E2D3C4B5A6978")
SANDBOX_KEY_ID = "sandbox-key-id"

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def declared_shops(env: Mapping[str, str], allow_sandbox_defaults: bool
                   ) -> tuple[tuple[ShopCredentials, ...], bool]:
    """Every shop served and whether they are the public sandbox one (no key set, a loopback bank)."""
    names = (*HASH_KEY_NAMES, "QPAY_KEY_ID", "QPAY_SHOP_NO", "QPAY_SHOPS", "QPAY_SHOPS_FILE")
    present = [n for n in names if env.get(n)]
    if not present and allow_sandbox_defaults:
        a1, a2, b1, b2 = SANDBOX_HASH_KEYS
        keys = (Secret(a1), Secret(a2), Secret(b1), Secret(b2))
        return (ShopCredentials(SANDBOX_SHOP_NO, keys, Secret(SANDBOX_KEY_ID)),), True
    try:
        if not present:
            # Nothing declared: name the single-shop variable first, as before several shops existed.
            shop_from_env(env)
        return tuple(shops_from_env(env)), False
    except ShopsError as exc:
        raise SettingsError(str(exc)) from None


def api_token(env: Mapping[str, str], api_base_url: str) -> Secret | None:
    """API_TOKEN: short ones only against the local sandbox, where nobody else can guess it."""
    token = env.get("API_TOKEN")
    if token and len(token) < MIN_API_TOKEN_LENGTH and not is_loopback(api_base_url):
        raise SettingsError(
            f"API_TOKEN must be at least {MIN_API_TOKEN_LENGTH} characters (e.g. `openssl rand -hex 32`); "
            "shorter ones are accepted only against the local sandbox (a loopback QPAY_API_BASE_URL)"
        )
    return Secret(token) if token else None


def flower_basic_auth(env: Mapping[str, str]) -> Secret | None:
    raw = env.get("FLOWER_BASIC_AUTH")
    if raw and ":" not in raw:
        raise SettingsError("FLOWER_BASIC_AUTH must be user:password")
    return Secret(raw) if raw else None


def log_level(env: Mapping[str, str]) -> str:
    level = env.get("LOG_LEVEL", "INFO").upper()
    if level not in LOG_LEVELS:
        raise SettingsError("LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
    return level


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


def checkout_secret(env: Mapping[str, str]) -> Secret | None:
    raw = env.get("CHECKOUT_SECRET") or ""
    if not raw:
        return None
    if len(raw) < MIN_CHECKOUT_SECRET:
        raise SettingsError(f"CHECKOUT_SECRET must be at least {MIN_CHECKOUT_SECRET} characters "
                            "(e.g. python -c 'import secrets; print(secrets.token_hex(32))')")
    return Secret(raw)


def shop_name(env: Mapping[str, str]) -> str | None:
    name = (env.get("SHOP_NAME") or "").strip()
    if len(name) > 60 or _CONTROL.search(name):
        raise SettingsError("SHOP_NAME must be at most 60 characters, without control characters")
    return name or None


def webhook_url(env: Mapping[str, str]) -> str | None:
    url = (env.get("SHOP_WEBHOOK_URL") or "").strip()
    if not url:
        return None
    parsed = urlparse(url)
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        raise SettingsError("SHOP_WEBHOOK_URL must be an http(s) URL")
    return url


def webhook_secret(env: Mapping[str, str], url: str | None) -> Secret | None:
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
