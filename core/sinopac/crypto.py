"""QPay message crypto: HashID, IV, Sign and AES (PROTOCOL.md §3-§6).

Pure functions: no I/O, no clock, no randomness. The nonce is always passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from Crypto.Cipher import AES
from Crypto.Util.Padding import pad, unpad

__all__ = [
    "CryptoError",
    "compact_json",
    "decrypt_message",
    "encrypt_message",
    "hash_id",
    "iv_from_nonce",
    "sign",
    "sign_string",
    "verify_sign",
]


class CryptoError(ValueError):
    """A value could not be encrypted or decrypted; never carries key material."""


def _key_bytes(name: str, key: str) -> bytes:
    text = key.strip().replace("-", "")
    if len(text) != 16:
        raise CryptoError(f"hash key {name} must be 16 hexadecimal characters")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise CryptoError(f"hash key {name} must be 16 hexadecimal characters") from None


def hash_id(a1: str, a2: str, b1: str, b2: str) -> str:
    """§3: hex(A1 XOR A2) + hex(B1 XOR B2), two uppercase digits per byte (leading zeros kept)."""
    ka1, ka2 = _key_bytes("A1", a1), _key_bytes("A2", a2)
    kb1, kb2 = _key_bytes("B1", b1), _key_bytes("B2", b2)
    x = bytes(p ^ q for p, q in zip(ka1, ka2, strict=True))
    y = bytes(p ^ q for p, q in zip(kb1, kb2, strict=True))
    return (x + y).hex().upper()


def iv_from_nonce(nonce: str) -> str:
    """§4: the last 16 characters of the uppercase hex SHA-256 of the nonce."""
    return hashlib.sha256(nonce.encode("utf-8")).hexdigest().upper()[-16:]


def _signable(value: Any) -> bool:
    # §5.2 and §12.1 (the official .NET rule): no objects, arrays, nulls, empty or blank strings.
    if value is None or isinstance(value, (Mapping, list, tuple)):
        return False
    return not (isinstance(value, str) and not value.strip())


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def sign_string(message: Mapping[str, Any]) -> str:
    """§5.1-§5.4: top-level scalars, sorted case-insensitively, `Key=Value` joined by `&`."""
    items = [(k, v) for k, v in message.items() if _signable(v)]
    items.sort(key=lambda kv: (kv[0].upper(), kv[0]))
    return "&".join(f"{k}={_plain(v)}" for k, v in items)


def sign(message: Mapping[str, Any], nonce: str, hash_id: str) -> str:
    """§5.5-§5.6: uppercase hex SHA-256 of sign_string + nonce + HashID."""
    data = (sign_string(message) + nonce + hash_id).encode("utf-8")
    return hashlib.sha256(data).hexdigest().upper()


def verify_sign(message: Mapping[str, Any], nonce: str, hash_id: str, sign_value: str) -> bool:
    """Constant-time check of a received Sign (case-insensitive hex)."""
    if not isinstance(sign_value, str):
        return False
    expected = sign(message, nonce, hash_id)
    return hmac.compare_digest(expected.encode("ascii"), sign_value.upper().encode("utf-8", "replace"))


def compact_json(message: Mapping[str, Any]) -> str:
    """§6: compact JSON, raw UTF-8, `/` not escaped (the bank's own style)."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


def _cipher(hash_id: str, nonce: str) -> Any:
    key = hash_id.encode("ascii")
    if len(key) != 32:
        raise CryptoError("HashID must be 32 characters")
    return AES.new(key, AES.MODE_CBC, iv=iv_from_nonce(nonce).encode("ascii"))


def encrypt_message(message: Mapping[str, Any], hash_id: str, nonce: str) -> str:
    """§6: AES-256-CBC (key = HashID's 32 ASCII bytes, IV from the nonce), PKCS#7, uppercase hex."""
    plaintext = compact_json(message).encode("utf-8")
    return _cipher(hash_id, nonce).encrypt(pad(plaintext, AES.block_size)).hex().upper()


def decrypt_message(message_hex: str, hash_id: str, nonce: str) -> dict[str, Any]:
    """§6 and §7: decrypt a Message and parse the JSON object inside it."""
    try:
        data = bytes.fromhex(message_hex)
    except (ValueError, TypeError):
        raise CryptoError("Message is not hexadecimal") from None
    if not data or len(data) % AES.block_size:
        raise CryptoError("Message length is not a whole number of AES blocks")
    try:
        plaintext = unpad(_cipher(hash_id, nonce).decrypt(data), AES.block_size)
        obj = json.loads(plaintext.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        raise CryptoError("Message does not decrypt to JSON (wrong key or nonce?)") from None
    if not isinstance(obj, dict):
        raise CryptoError("Message does not decrypt to a JSON object")
    return obj
