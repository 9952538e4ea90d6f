"""The sandbox's configuration: shops and keys from the client's own settings, plus sandbox knobs."""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.endpoints import DEFAULT_API_BASE_URL
from core.secrets import Secret
from core.settings import SettingsError, ShopCredentials, load_settings
from core.shops import KEY_FIELDS, ShopsError, key_fingerprint, parse_shops

__all__ = ["SandboxConfig", "Shop", "load_shops"]


@dataclass(frozen=True)
class Shop:
    """A shop as the bank knows it: its HashID (AES key and signing secret) and its X-KeyID.

    During a key change (`POST /sandbox/shops/<ShopNo>/keys`) `previous` is the set the bank still
    accepts on requests (told apart by X-KeyID); replies are signed with the current set, or with the
    request's set when `reply_with` is "request".
    """

    shop_no: str
    hash_id: Secret
    key_id: Secret
    previous: Shop | None = None
    reply_with: str = "current"  # current | request

    def matching(self, key_id: str) -> Shop | None:
        """The key set (this one or the previous) whose X-KeyID is `key_id`, or None."""
        given = key_id.encode("utf-8")
        for keys in (self, self.previous):
            if keys is not None and hmac.compare_digest(given, keys.key_id.reveal().encode("utf-8")):
                return keys
        return None

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.hash_id, self.key_id)


@dataclass(frozen=True)
class SandboxConfig:
    shops: Mapping[str, Shop]
    host: str = "127.0.0.1"
    port: int = 8100
    public_url: str = ""  # base of the payment pages' links; default http://<host>:<port>
    nonce_ttl: float = 300.0
    atm_autopay_seconds: float = 0.0  # 0 = off
    resend_interval: float = 600.0
    max_sends: int = 5
    callback_timeout: float = 5.0
    callback_workers: int = 8
    faults: Mapping[str, Any] = field(default_factory=dict)
    access_log: bool = False

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"


def _shop(creds: ShopCredentials) -> Shop:
    return Shop(creds.shop_no, creds.hash_id, creds.key_id)


def shop_from_keys(shop_no: object, data: Mapping[str, Any]) -> Shop:
    """A key set posted to the control API ({"a1", "a2", "b1", "b2", "key_id"}), validated like the
    client's own configuration; errors name the field, never the value."""
    try:
        shop = parse_shops(json.dumps([{"shop_no": shop_no, **{k: data.get(k) for k in KEY_FIELDS},
                                        "key_id": data.get("key_id")}]), "keys")[0]
    except ShopsError as exc:
        raise SettingsError(str(exc)) from None
    return _shop(shop)


def _extra_shops(raw: str) -> list[Shop]:
    """SANDBOX_EXTRA_SHOPS: a JSON list of {"shop_no", "a1", "a2", "b1", "b2", "key_id"}."""
    try:
        items = json.loads(raw)
    except ValueError:
        raise SettingsError("SANDBOX_EXTRA_SHOPS must be JSON (a list of shop objects)") from None
    if not isinstance(items, list):
        raise SettingsError("SANDBOX_EXTRA_SHOPS must be a JSON list")
    shops = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise SettingsError(f"SANDBOX_EXTRA_SHOPS[{index}] must be an object")
        try:
            shops.append(shop_from_keys(item.get("shop_no"), item))
        except SettingsError as exc:
            raise SettingsError(f"SANDBOX_EXTRA_SHOPS[{index}]: {exc}") from None
    return shops


def load_shops(env: Mapping[str, str] | None = None) -> dict[str, Shop]:
    """Every shop of the client's settings (QPAY_SHOP_NO / QPAY_HASH_* / QPAY_KEY_ID, QPAY_SHOPS,
    QPAY_SHOPS_FILE), each with its active key set, plus SANDBOX_EXTRA_SHOPS.

    The sandbox is the bank, so it reads the keys as if the bank were local: with no key configured
    it serves the public sandbox shop (core.variables.SANDBOX_*), wherever its clients reach it from.
    """
    env = dict(os.environ if env is None else env)
    env["QPAY_API_BASE_URL"] = DEFAULT_API_BASE_URL
    shops = {s.shop_no: _shop(s) for s in load_settings(env).all_shops}
    extra = env.get("SANDBOX_EXTRA_SHOPS", "").strip()
    for shop in _extra_shops(extra) if extra else []:
        if shop.shop_no in shops:
            raise SettingsError(f"SANDBOX_EXTRA_SHOPS: shop {shop.shop_no} is configured twice")
        shops[shop.shop_no] = shop
    return shops
