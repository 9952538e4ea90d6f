"""The Order envelope (PROTOCOL.md §7): sealing a request and opening a reply, without I/O.

Kept apart from the HTTP client so that the whole trust decision on a reply (decrypt with the
reply's own nonce, verify its Sign, read the inner Status) is a pure function with its own tests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from core.sinopac import crypto
from core.sinopac.errors import (
    BankRejection,
    EnvelopeRefused,
    MalformedReply,
    SignatureMismatch,
    UndecryptableReply,
)

__all__ = ["VERSION", "open_reply", "rejection_code", "seal_request"]

VERSION = "1.0.0"
_REPLY_FIELDS = ("Nonce", "Sign", "Message")
_CODE = re.compile(r"^\s*([A-Z]\d{4,5})\b")


def seal_request(
    service: str, message: Mapping[str, Any], *, shop_no: str, nonce: str, hash_id: str
) -> dict[str, str]:
    """§7 request envelope: Sign over the plain message, Message encrypted with the request nonce."""
    return {
        "Version": VERSION,
        "ShopNo": shop_no,
        "APIService": service,
        "Sign": crypto.sign(message, nonce, hash_id),
        "Nonce": nonce,
        "Message": crypto.encrypt_message(message, hash_id, nonce),
    }


def rejection_code(description: str) -> str:
    """The leading code of a Description such as `E0602 – 收款方式未啟用`, or "" if none."""
    match = _CODE.match(description or "")
    return match.group(1) if match else ""


def _short(text: object, limit: int = 80) -> str:
    value = str(text).replace("\n", " ").replace("\r", " ")
    return value if len(value) <= limit else value[:limit] + "…"


def _envelope_fields(service: str, body: Any) -> tuple[str, str, str]:
    """Nonce, Sign and Message of a reply envelope for `service`; an unsigned error is refused here."""
    if not isinstance(body, dict):
        raise MalformedReply(f"{service}: reply is not a JSON object", service=service)
    missing = [name for name in _REPLY_FIELDS if not isinstance(body.get(name), str) or not body.get(name)]
    if missing:
        if "Status" in body or "Description" in body:
            # Envelope-level failure (§7, UNVERIFIED shape): unsigned, so it is reported, never trusted.
            raise EnvelopeRefused(
                f"{service}: bank answered an unsigned envelope-level error "
                f"(Status={_short(body.get('Status'), 8)!s}, Description={_short(body.get('Description'))})",
                service=service,
            )
        raise MalformedReply(f"{service}: reply envelope lacks {', '.join(missing)}", service=service)
    reply_service = body.get("APIService")
    if reply_service not in (None, "", service):
        raise MalformedReply(
            f"{service}: reply envelope is for APIService {_short(reply_service, 30)}", service=service
        )
    return body["Nonce"], body["Sign"], body["Message"]


def open_reply(service: str, body: Any, *, hash_id: str) -> dict[str, Any]:
    """§7 reply processing; returns the verified inner message whose Status is S.

    Raises MalformedReply, UndecryptableReply or SignatureMismatch when the reply cannot be trusted,
    and BankRejection when a trusted reply says Status F.
    """
    nonce, sign_value, message_hex = _envelope_fields(service, body)
    try:
        inner = crypto.decrypt_message(message_hex, hash_id, nonce)
    except crypto.CryptoError as exc:
        raise UndecryptableReply(
            f"{service}: reply Message does not decrypt ({exc})", service=service
        ) from None
    if not crypto.verify_sign(inner, nonce, hash_id, sign_value):
        raise SignatureMismatch(f"{service}: reply Sign does not verify", service=service)
    status = inner.get("Status")
    description = inner.get("Description")
    description = description if isinstance(description, str) else ""
    if status == "F":
        code = rejection_code(description)
        raise BankRejection(
            f"{service}: bank rejected the call ({_short(description) or 'no description'})",
            service=service,
            code=code,
            description=description,
        )
    if status != "S":
        raise MalformedReply(f"{service}: reply Status is {_short(status, 8)!s}, not S or F", service=service)
    return inner
