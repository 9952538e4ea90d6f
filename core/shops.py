"""The shops of one deployment: each ShopNo with its key sets (active, and optionally `next`).

A SinoPac merchant number carries several shops, each with its own four hash keys and X-KeyID. They
are declared by the single-shop variables (QPAY_SHOP_NO, QPAY_HASH_A1..B2, QPAY_KEY_ID, and
QPAY_NEXT_HASH_A1..B2 / QPAY_NEXT_KEY_ID for a key change), by QPAY_SHOPS (JSON) and by the file that
QPAY_SHOPS_FILE names (secret mounts); docs/shops.md has the format. Every error names the source,
the shop and the field, never a value.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from core.secrets import Secret
from core.sinopac.crypto import hash_id
from core.sinopac.fields import SHOP_NO_RE

__all__ = [
    "HASH_KEY_NAMES",
    "NEXT_HASH_KEY_NAMES",
    "KeySet",
    "KeySetName",
    "ShopCredentials",
    "ShopsError",
    "UnknownShop",
    "key_fingerprint",
    "parse_shops",
    "shops_from_env",
]

HASH_KEY_NAMES = ("QPAY_HASH_A1", "QPAY_HASH_A2", "QPAY_HASH_B1", "QPAY_HASH_B2")
NEXT_HASH_KEY_NAMES = ("QPAY_NEXT_HASH_A1", "QPAY_NEXT_HASH_A2", "QPAY_NEXT_HASH_B1", "QPAY_NEXT_HASH_B2")
KEY_FIELDS = ("a1", "a2", "b1", "b2")
SHOP_FIELDS = frozenset({"shop_no", "name", *KEY_FIELDS, "key_id", "next"})
KeySetName = Literal["active", "next"]

_HEX16 = re.compile(r"^[0-9A-Fa-f]{16}$")
_MAX_NAME = 60


class ShopsError(ValueError):
    """A shop declaration is missing or malformed; the message names the shop and field, never a value."""


class UnknownShop(LookupError):
    """A ShopNo that this deployment does not serve."""

    def __init__(self, shop_no: str) -> None:
        super().__init__(f"shop {shop_no} is not configured")
        self.shop_no = shop_no


def key_fingerprint(hash_id: Secret, key_id: Secret) -> str:
    """12 hex digits that tell key sets apart in listings (the bank's side prints the same); a one-way
    digest of the HashID and X-KeyID, never a key."""
    material = f"qpay-key-fingerprint:{hash_id.reveal()}:{key_id.reveal()}"
    return hashlib.sha256(material.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class KeySet:
    """Four hash keys and the X-KeyID that goes with them."""

    hash_keys: tuple[Secret, Secret, Secret, Secret]
    key_id: Secret

    @property
    def hash_id(self) -> Secret:
        return Secret(hash_id(*(k.reveal() for k in self.hash_keys)))

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.hash_id, self.key_id)

    def secrets(self) -> tuple[str, ...]:
        """Every value of this set that must never appear in a log line or an error."""
        return (*(k.reveal() for k in self.hash_keys), self.hash_id.reveal(), self.key_id.reveal())


@dataclass(frozen=True)
class ShopCredentials:
    """One shop's identity at the bank: ShopNo, the active key set, an optional `next` set and name."""

    shop_no: str
    hash_keys: tuple[Secret, Secret, Secret, Secret]
    key_id: Secret
    next_keys: KeySet | None = None
    name: str | None = None

    @property
    def active(self) -> KeySet:
        return KeySet(self.hash_keys, self.key_id)

    @property
    def hash_id(self) -> Secret:
        return self.active.hash_id

    @property
    def display_name(self) -> str:
        return self.name or self.shop_no

    def key_sets(self) -> Iterator[tuple[KeySetName, KeySet]]:
        """The active set first, then `next` if there is one."""
        yield "active", self.active
        if self.next_keys is not None:
            yield "next", self.next_keys

    def secrets(self) -> tuple[str, ...]:
        return tuple(value for _, keys in self.key_sets() for value in keys.secrets())


def _hash_key(get: Mapping[str, Any], name: str, where: str) -> Secret:
    value = get.get(name)
    value = value.strip() if isinstance(value, str) else ""
    if not _HEX16.match(value):
        raise ShopsError(f"{where}{name} is missing or malformed (expected 16 hexadecimal characters)")
    return Secret(value)


def _key_set(get: Mapping[str, Any], names: Iterable[str], key_id_name: str, where: str) -> KeySet:
    a1, a2, b1, b2 = (_hash_key(get, name, where) for name in names)
    key_id = get.get(key_id_name)
    key_id = key_id.strip() if isinstance(key_id, str) else ""
    if not key_id:
        raise ShopsError(f"{where}{key_id_name} is missing (the X-KeyID issued by SinoPac)")
    if not (key_id.isascii() and key_id.isprintable()):
        raise ShopsError(f"{where}{key_id_name} must be printable ASCII (it is sent as the X-KeyID header)")
    return KeySet((a1, a2, b1, b2), Secret(key_id))


def _check_shop_no(shop_no: object, where: str) -> str:
    if not isinstance(shop_no, str) or not SHOP_NO_RE.fullmatch(shop_no):
        raise ShopsError(f"{where} is missing or malformed (letters, digits and _, at most 20)")
    return shop_no


def shop_from_env(env: Mapping[str, str]) -> ShopCredentials:
    """The shop of the single-shop variables (QPAY_SHOP_NO, QPAY_HASH_*, QPAY_KEY_ID, QPAY_NEXT_*)."""
    shop_no = _check_shop_no(env.get("QPAY_SHOP_NO", ""), "QPAY_SHOP_NO")
    active = _key_set(env, HASH_KEY_NAMES, "QPAY_KEY_ID", "")
    next_keys = None
    if any(env.get(n) for n in (*NEXT_HASH_KEY_NAMES, "QPAY_NEXT_KEY_ID")):
        next_keys = _key_set(env, NEXT_HASH_KEY_NAMES, "QPAY_NEXT_KEY_ID", "")
    return ShopCredentials(shop_no, active.hash_keys, active.key_id, next_keys)


def _shop_from_object(item: object, source: str, index: int) -> ShopCredentials:
    if not isinstance(item, dict):
        raise ShopsError(f"{source}: entry {index} must be an object")
    where = f"{source}: entry {index}: shop_no"
    shop_no = _check_shop_no(item.get("shop_no"), where)
    where = f"{source}: shop {shop_no}: "
    unknown = sorted(str(k)[:30] for k in item if k not in SHOP_FIELDS)
    if unknown:
        raise ShopsError(f"{where}unknown field(s) {', '.join(unknown)}")
    name = item.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > _MAX_NAME
                             or not name.isprintable()):
        raise ShopsError(f"{where}name must be printable text of at most {_MAX_NAME} characters")
    active = _key_set(item, KEY_FIELDS, "key_id", where)
    raw_next = item.get("next")
    next_keys = None
    if raw_next is not None:
        if not isinstance(raw_next, dict):
            raise ShopsError(f"{where}next must be an object with a1, a2, b1, b2 and key_id")
        next_keys = _key_set(raw_next, KEY_FIELDS, "key_id", f"{where}next.")
    display = name.strip() if isinstance(name, str) else None
    return ShopCredentials(shop_no, active.hash_keys, active.key_id, next_keys, display)


def parse_shops(raw: str, source: str) -> list[ShopCredentials]:
    """A JSON list of shop objects (docs/shops.md); `source` names the variable or file in errors."""
    try:
        items = json.loads(raw)
    except ValueError:
        raise ShopsError(f"{source} must be JSON (a list of shop objects)") from None
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list) or not items:
        raise ShopsError(f"{source} must be a non-empty JSON list of shop objects")
    return [_shop_from_object(item, source, index) for index, item in enumerate(items)]


def shops_from_env(env: Mapping[str, str]) -> list[ShopCredentials]:
    """Every declared shop: the single-shop variables (if QPAY_SHOP_NO or a key is set), then QPAY_SHOPS,
    then QPAY_SHOPS_FILE. A ShopNo declared twice, or a key set shared by two shops, is an error."""
    shops: list[ShopCredentials] = []
    single = (*HASH_KEY_NAMES, "QPAY_KEY_ID", "QPAY_SHOP_NO", *NEXT_HASH_KEY_NAMES, "QPAY_NEXT_KEY_ID")
    if any(env.get(n) for n in single):
        shops.append(shop_from_env(env))
    raw = env.get("QPAY_SHOPS", "").strip()
    if raw:
        shops += parse_shops(raw, "QPAY_SHOPS")
    path = env.get("QPAY_SHOPS_FILE", "").strip()
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ShopsError(f"QPAY_SHOPS_FILE cannot be read ({type(exc).__name__})") from None
        shops += parse_shops(text, "QPAY_SHOPS_FILE")
    seen: dict[str, str] = {}
    for shop in shops:
        if shop.shop_no in seen:
            raise ShopsError(f"shop {shop.shop_no} is declared twice")
        seen[shop.shop_no] = shop.shop_no
        for label, keys in shop.key_sets():
            owner = seen.get("fp:" + keys.fingerprint)
            if owner is not None and owner != shop.shop_no:
                raise ShopsError(f"shop {shop.shop_no}: its {label} key set is also another shop's ({owner})")
            seen["fp:" + keys.fingerprint] = shop.shop_no
    return shops
