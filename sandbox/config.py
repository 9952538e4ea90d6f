"""The sandbox's configuration: shops and keys from the client's own settings, plus sandbox knobs."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.secrets import Secret
from core.settings import DEFAULT_API_BASE_URL, HASH_KEY_NAMES, SettingsError, ShopCredentials, load_settings

__all__ = ["SandboxConfig", "Shop", "load_shops"]


@dataclass(frozen=True)
class Shop:
    """A shop as the bank knows it: its HashID (AES key and signing secret) and its X-KeyID."""

    shop_no: str
    hash_id: Secret
    key_id: Secret


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
        env = {"QPAY_API_BASE_URL": DEFAULT_API_BASE_URL, "QPAY_SHOP_NO": str(item.get("shop_no", "")),
               "QPAY_KEY_ID": str(item.get("key_id", ""))}
        for name, key in zip(HASH_KEY_NAMES, ("a1", "a2", "b1", "b2"), strict=True):
            env[name] = str(item.get(key, ""))
        try:
            shops.append(_shop(load_settings(env).shop))
        except SettingsError as exc:
            raise SettingsError(f"SANDBOX_EXTRA_SHOPS[{index}]: {exc}") from None
    return shops


def load_shops(env: Mapping[str, str] | None = None) -> dict[str, Shop]:
    """The shop of QPAY_SHOP_NO / QPAY_HASH_* / QPAY_KEY_ID, plus SANDBOX_EXTRA_SHOPS.

    The sandbox is the bank, so it reads the keys as if the bank were local: with no key configured
    it serves the public sandbox shop (core.settings.SANDBOX_*), wherever its clients reach it from.
    """
    env = dict(os.environ if env is None else env)
    env["QPAY_API_BASE_URL"] = DEFAULT_API_BASE_URL
    shops = {s.shop_no: s for s in [_shop(load_settings(env).shop)]}
    extra = env.get("SANDBOX_EXTRA_SHOPS", "").strip()
    for shop in _extra_shops(extra) if extra else []:
        if shop.shop_no in shops:
            raise SettingsError(f"SANDBOX_EXTRA_SHOPS: shop {shop.shop_no} is configured twice")
        shops[shop.shop_no] = shop
    return shops
