"""The bank's side of the envelope (PROTOCOL §2, §5-§7): check a request, seal a reply.

A request that cannot be trusted never reaches a service: it gets an envelope-level error, an
unsigned JSON object `{"Version", "ShopNo", "APIService", "Status": "F", "Description"}` (the real
shape is unknown, §7; this one is what defensive clients expect).
"""

from __future__ import annotations

from typing import Any

from core.sinopac import crypto
from sandbox.bank import Bank, reply_nonce
from sandbox.config import Shop

__all__ = ["ORDER_SERVICES", "EnvelopeError", "check_key_id", "error_body", "open_request", "reply_keys",
           "seal_reply"]

VERSION = "1.0.0"
ORDER_SERVICES = ("OrderCreate", "OrderQuery", "OrderPayQuery")
_FIELDS = ("Version", "ShopNo", "APIService", "Sign", "Nonce", "Message")


class EnvelopeError(Exception):
    """Why a request was refused before any service ran; `description` starts with an E-code."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


def error_body(description: str, *, shop_no: Any = "", service: Any = "") -> dict[str, str]:
    return {
        "Version": VERSION,
        "ShopNo": shop_no if isinstance(shop_no, str) else "",
        "APIService": service if isinstance(service, str) else "",
        "Status": "F",
        "Description": description,
    }


def check_key_id(bank: Bank, shop_no: Any, key_id: str | None) -> Shop:
    """The shop must exist and the X-KeyID header must be one issued to it: its current set's, or
    during a key change its previous set's. Returns that key set."""
    shop = bank.shops.get(shop_no) if isinstance(shop_no, str) else None
    if shop is None:
        raise EnvelopeError("E9002 – ShopNo 不存在 (unknown ShopNo)")
    keys = shop.matching(key_id) if key_id else None
    if keys is None:
        raise EnvelopeError("E9003 – X-KeyID 驗證失敗 (missing or wrong X-KeyID)")
    return keys


def open_request(bank: Bank, body: Any, key_id: str | None) -> tuple[Shop, str, dict[str, Any]]:
    """Check and open an Order envelope: (the shop's key set the request used, APIService, message)."""
    if not isinstance(body, dict) or any(not body.get(f) or not isinstance(body[f], str) for f in _FIELDS):
        raise EnvelopeError(f"E9001 – 請求格式錯誤 (the envelope needs {', '.join(_FIELDS)} as strings)")
    if body["Version"] != VERSION:
        raise EnvelopeError(f"E9001 – 請求格式錯誤 (Version must be {VERSION})")
    shop = check_key_id(bank, body["ShopNo"], key_id)
    service = body["APIService"]
    if service not in ORDER_SERVICES:
        raise EnvelopeError("E9007 – APIService 不支援 (unsupported APIService)")
    problem = bank.take_nonce(body["Nonce"], shop.shop_no)
    if problem:
        raise EnvelopeError(f"E9004 – Nonce 無效 (nonce {problem})")
    hash_id = shop.hash_id.reveal()
    try:
        message = crypto.decrypt_message(body["Message"], hash_id, body["Nonce"])
    except crypto.CryptoError:
        raise EnvelopeError("E9005 – Message 解密失敗 (Message does not decrypt to a JSON object)") from None
    if not crypto.verify_sign(message, body["Nonce"], hash_id, body["Sign"]):
        raise EnvelopeError("E9006 – Sign 驗證失敗 (Sign does not verify)")
    return shop, service, message


def reply_keys(bank: Bank, used: Shop) -> Shop:
    """The set a reply is sealed with: the shop's current set, or (reply_with "request") the one the
    request used."""
    current = bank.shops.get(used.shop_no, used)
    return used if current.reply_with == "request" else current


def seal_reply(shop: Shop, service: str, inner: dict[str, Any]) -> dict[str, str]:
    """§7 reply: encrypted with, and signed over, a fresh reply nonce."""
    nonce = reply_nonce()
    hash_id = shop.hash_id.reveal()
    return {
        "Version": VERSION,
        "ShopNo": shop.shop_no,
        "APIService": service,
        "Sign": crypto.sign(inner, nonce, hash_id),
        "Nonce": nonce,
        "Message": crypto.encrypt_message(inner, hash_id, nonce),
    }
