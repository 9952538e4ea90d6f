"""Standard Webhooks v1 signing (standardwebhooks.com): pure functions, no I/O.

The shop verifies `webhook-signature` = `v1,` + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}"))
with the key bytes of `whsec_<base64>`. The tests check our output with the independent
`standardwebhooks` package, never with this module.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from core.variables import WEBHOOK_SECRET_PREFIX

SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh `whsec_<base64>` secret of 32 random bytes."""
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The key bytes of a `whsec_<base64>` secret (validated by core.settings at start-up)."""
    return base64.b64decode(secret.removeprefix(WEBHOOK_SECRET_PREFIX))


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one attempt."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def signed_headers(key: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Every header of one delivery attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, msg_id, timestamp, body),
        "Content-Type": "application/json",
    }
