"""Fault injection: what can go wrong between a shop and the bank, on demand and deterministically.

The settings are one JSON object (documented in docs/sandbox.md), set at start
(`--faults` / SANDBOX_FAULTS) and changed at run time with `POST /sandbox/faults`.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["SERVICES", "Decision", "FaultError", "Faults"]

SERVICES = ("Nonce", "OrderCreate", "OrderQuery", "OrderPayQuery")
ACTIONS = ("error", "hang", "malformed", "bad_sign", "drop", "html")
MAX_HANG = 120.0
MAX_LATENCY_MS = 60_000

DEFAULTS: dict[str, Any] = {
    "latency_ms": 0,  # a number, or [min, max] for a uniform random delay
    "error_rate": 0.0,  # share of calls answered with one of error_statuses
    "error_statuses": [500, 502, 503],
    "hang_rate": 0.0,  # share of calls held for hang_seconds, then closed without a reply
    "hang_seconds": 5.0,
    "malformed_rate": 0.0,  # share of replies cut in half (not JSON)
    "html_rate": 0.0,  # share of calls answered HTTP 200 with an HTML maintenance page
    "bad_sign_rate": 0.0,  # share of Order replies with a Sign that does not verify
    "drop_callback_rate": 0.0,  # share of payments whose BackendURL is never called
    "duplicate_callback_rate": 0.0,  # share of callback sends that are sent twice
    "fail_next": 0,  # the next N Order calls (in scope) fail with fail_next_action
    "fail_next_action": "error",  # error, hang, malformed, bad_sign, drop (close the connection), html
    "fail_next_status": 503,
    "fail_phase": "before",  # error/hang/drop: before the bank processes the call, or after
    "services": [],  # scope: empty = all, else names from SERVICES
    "shops": [],  # scope: empty = every shop, else these ShopNos (one shop's bank trouble)
    "seed": None,
    # OrderPayQuery replies, correctly encrypted and signed and echoing the queried PayToken, describe
    # this OrderNo of the shop as paid (the Sign does not cover TSResultContent); "" = off.
    "misdirect_order_no": "",
}


class FaultError(ValueError):
    """The fault settings sent are not valid; the message says which key and why."""


@dataclass(frozen=True)
class Decision:
    latency: float = 0.0  # seconds
    action: str | None = None
    status: int = 503
    hang_seconds: float = 0.0
    after: bool = False  # the bank processes the call, then the reply is lost or spoilt


def _rate(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise FaultError(f"{name} must be a number from 0 to 1")
    return float(value)


def _validate(s: dict[str, Any]) -> None:
    for name in DEFAULTS:
        if name.endswith("_rate"):
            s[name] = _rate(name, s[name])
    latency = s["latency_ms"]
    if isinstance(latency, list):
        if len(latency) != 2 or not all(_number(v) and 0 <= v <= MAX_LATENCY_MS for v in latency):
            raise FaultError(f"latency_ms must be a number or [min, max] from 0 to {MAX_LATENCY_MS}")
        if latency[0] > latency[1]:
            raise FaultError("latency_ms [min, max] needs min <= max")
    elif not (_number(latency) and 0 <= latency <= MAX_LATENCY_MS):
        raise FaultError(f"latency_ms must be a number or [min, max] from 0 to {MAX_LATENCY_MS}")
    statuses = s["error_statuses"]
    if not isinstance(statuses, list) or not statuses or not all(_status(v) for v in statuses):
        raise FaultError("error_statuses must be a non-empty list of HTTP statuses 400-599")
    if not _status(s["fail_next_status"]):
        raise FaultError("fail_next_status must be an HTTP status 400-599")
    if not (_number(s["hang_seconds"]) and 0 <= s["hang_seconds"] <= MAX_HANG):
        raise FaultError(f"hang_seconds must be a number from 0 to {MAX_HANG:g}")
    if isinstance(s["fail_next"], bool) or not isinstance(s["fail_next"], int) or s["fail_next"] < 0:
        raise FaultError("fail_next must be a whole number >= 0")
    if s["fail_next_action"] not in ACTIONS:
        raise FaultError(f"fail_next_action must be one of {', '.join(ACTIONS)}")
    if s["fail_phase"] not in ("before", "after"):
        raise FaultError("fail_phase must be 'before' or 'after'")
    services = s["services"]
    if not isinstance(services, list) or any(v not in SERVICES for v in services):
        raise FaultError(f"services must be a list of names from {', '.join(SERVICES)}")
    shops = s["shops"]
    if not isinstance(shops, list) or any(not isinstance(v, str) or not v for v in shops):
        raise FaultError("shops must be a list of ShopNos")
    if s["seed"] is not None and (isinstance(s["seed"], bool) or not isinstance(s["seed"], int)):
        raise FaultError("seed must be a whole number or null")
    if not isinstance(s["misdirect_order_no"], str) or len(s["misdirect_order_no"]) > 50:
        raise FaultError("misdirect_order_no must be an OrderNo (a string, at most 50 characters) or \"\"")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _status(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599


class Faults:
    """Thread-safe fault settings and the per-call decisions drawn from them."""

    def __init__(self, initial: Mapping[str, Any] | None = None) -> None:
        self._lock = threading.Lock()
        self._initial = self._merge(dict(DEFAULTS), initial or {})
        self._s = dict(self._initial)
        self._random = random.Random(self._s["seed"])

    @staticmethod
    def _merge(base: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(patch, Mapping):
            raise FaultError("fault settings must be a JSON object")
        unknown = sorted(set(patch) - set(DEFAULTS) - {"clear"})
        if unknown:
            raise FaultError(f"unknown fault setting(s): {', '.join(unknown)}")
        clear = patch.get("clear", False)
        if not isinstance(clear, bool):
            raise FaultError("clear must be true or false")
        merged = dict(DEFAULTS) if clear else dict(base)
        merged.update({k: v for k, v in patch.items() if k != "clear"})
        _validate(merged)
        return merged

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._s)

    def update(self, patch: Mapping[str, Any]) -> dict[str, Any]:
        """Merge `patch` into the settings (`"clear": true` starts from no faults); all or nothing."""
        with self._lock:
            merged = self._merge(self._s, patch)
            if "seed" in patch:
                self._random = random.Random(merged["seed"])
            self._s = merged
            return dict(merged)

    def reset(self) -> None:
        """Back to the settings given at start."""
        with self._lock:
            self._s = dict(self._initial)
            self._random = random.Random(self._s["seed"])

    def decide(self, service: str, *, order_call: bool, shop_no: object = None) -> Decision:
        """What happens to one call to `service` (Nonce, or an Order call's APIService) of `shop_no`."""
        with self._lock:
            s = self._s
            if s["services"] and service not in s["services"]:
                return Decision()
            if s["shops"] and shop_no not in s["shops"]:
                return Decision()
            latency = s["latency_ms"]
            if isinstance(latency, list):
                latency = self._random.uniform(latency[0], latency[1])
            base = {"latency": latency / 1000.0, "hang_seconds": float(s["hang_seconds"])}
            if order_call and s["fail_next"] > 0:
                s["fail_next"] -= 1
                action = s["fail_next_action"]
                status = s["fail_next_status"]
                return Decision(**base, action=action, status=status, after=self._after(action))
            draw = self._random.random()
            for action, name in (("hang", "hang_rate"), ("error", "error_rate"), ("html", "html_rate"),
                                 ("malformed", "malformed_rate"), ("bad_sign", "bad_sign_rate")):
                if action == "bad_sign" and not order_call:
                    continue  # a Nonce reply carries no Sign
                if draw < s[name]:
                    status = self._random.choice(s["error_statuses"])
                    return Decision(**base, action=action, status=status, after=self._after(action))
                draw -= s[name]
            return Decision(**base)

    def _after(self, action: str) -> bool:
        return action in ("malformed", "bad_sign") or self._s["fail_phase"] == "after"

    def misdirected(self) -> str:
        """The OrderNo OrderPayQuery replies should (wrongly) describe as paid, or ""."""
        with self._lock:
            return str(self._s["misdirect_order_no"])

    def drop_callback(self) -> bool:
        with self._lock:
            rate = self._s["drop_callback_rate"]
            return rate > 0 and self._random.random() < rate

    def duplicate_callback(self) -> bool:
        with self._lock:
            rate = self._s["duplicate_callback_rate"]
            return rate > 0 and self._random.random() < rate
