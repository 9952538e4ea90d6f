"""The bank's state: nonces, orders, payments (PayTokens) and call counts, behind one lock.

Every public method takes the lock and returns copies, so request threads and callback threads
never see (or hand out) a half-updated order.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import secrets
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

# PayStatus codes come from core's one table (PROTOCOL §9.4 documents 1A200, 1A400, 1C400; the
# others are ours, marked so there).
from core.sinopac.paystatus import (
    ATM_OVERDUE,
    ATM_PAID,
    ATM_UNPAID,
    CARD_CAPTURED,
    CARD_DECLINED,
    CARD_EXPIRED,
    CARD_UNPAID,
    OVERDUE_CODES,
    PAID_CODES,
)
from sandbox.config import Shop
from sandbox.records import Attempt, Order, PayError, Payment

__all__ = ["Bank", "pay_status", "reply_nonce"]

Clock = Callable[[], datetime]


def pay_status(order: Order, now: datetime) -> str:
    """The PayStatus code of an order at `now` (overdue is computed, never stored)."""
    atm = order.pay_type == "A"
    if order.state == "paid":
        return ATM_PAID if atm else CARD_CAPTURED
    if order.state == "declined":
        return CARD_DECLINED
    if order.state == "expired" or now >= order.expires_at():
        return ATM_OVERDUE if atm else CARD_EXPIRED
    return ATM_UNPAID if atm else CARD_UNPAID


def _new_nonce() -> str:
    # Shaped like the real ones (§2): Base64 of "<ticks>.<digit>:<64 hex>", 108 characters.
    ticks = f"{int(time.time() * 100) % 10**14:014d}.{secrets.randbelow(10)}"
    return base64.b64encode(f"{ticks}:{secrets.token_hex(32).upper()}".encode("ascii")).decode("ascii")


def reply_nonce() -> str:
    return _new_nonce()


class Bank:
    def __init__(self, shops: Mapping[str, Shop], *, nonce_ttl: float, clock: Clock | None = None) -> None:
        self.shops = dict(shops)
        self._nonce_ttl = nonce_ttl
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._nonces: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._orders: dict[tuple[str, str], Order] = {}  # by (ShopNo, OrderNo): unique per shop
        self._payments: dict[str, Payment] = {}
        self._serial: Counter[str] = Counter()
        self._calls: Counter[str] = Counter()
        self._outcomes: Counter[str] = Counter()
        self._started = time.monotonic()

    def now(self) -> datetime:
        return self._clock()

    # -- nonces (§2: single use, short-lived) --------------------------------------------------

    def issue_nonce(self, shop_no: str) -> str:
        nonce = _new_nonce()
        now = time.monotonic()
        with self._lock:
            while self._nonces:  # oldest first: drop the expired ones
                first, (_, expires) = next(iter(self._nonces.items()))
                if expires > now:
                    break
                del self._nonces[first]
            self._nonces[nonce] = (shop_no, now + self._nonce_ttl)
        return nonce

    def take_nonce(self, nonce: str, shop_no: str) -> str | None:
        """Consume a nonce; returns why it is unusable, or None when it is good."""
        with self._lock:
            entry = self._nonces.pop(nonce, None)
        if entry is None:
            return "unknown or already used"
        owner, expires = entry
        if time.monotonic() >= expires:
            return "expired"
        if owner != shop_no:
            return "issued to another shop"
        return None

    # -- orders --------------------------------------------------------------------------------

    def add_order(self, order: Order) -> Order | None:
        """Store a new order, giving it a TSNo (and an AtmPayNo); None if the shop has that OrderNo."""
        with self._lock:
            if (order.shop_no, order.order_no) in self._orders:
                return None
            prefix = order.shop_no.split("_")[0][:6].upper()
            self._serial[prefix] += 1
            order.ts_no = f"{prefix}{self._serial[prefix]:08d}"
            if order.pay_type == "A":
                self._serial["ATM"] += 1
                order.atm_pay_no = f"99922{self._serial['ATM']:09d}"
            order.page_key = secrets.token_hex(16)
            self._orders[(order.shop_no, order.order_no)] = order
            return copy.deepcopy(order)

    def _find(self, order_no: str, shop_no: str | None, page_key: str | None = None) -> Order | None:
        """The order with this OrderNo (of `shop_no`, or the only one of any shop; the lock is held).
        With a page key the page's own order is meant. PayError 409 when two shops have the OrderNo."""
        if shop_no:
            return self._orders.get((shop_no, order_no))
        found = [o for (_, no), o in self._orders.items() if no == order_no]
        if page_key is not None:
            found = [o for o in found if secrets.compare_digest(page_key, o.page_key)] or found[:1]
        if len(found) > 1:
            raise PayError(409, f"order {order_no} exists in several shops: add ?shop=<ShopNo>")
        return found[0] if found else None

    def order(
        self, order_no: str, shop_no: str | None = None, *, page_key: str | None = None
    ) -> Order | None:
        with self._lock:
            found = self._find(order_no, shop_no, page_key)
            return copy.deepcopy(found) if found else None

    def orders(
        self, shop_no: str, keep: Callable[[Order], bool], limit: int, *, order_no: str = ""
    ) -> list[Order]:
        """Up to `limit` orders of a shop that `keep` accepts, oldest first (one lookup by OrderNo)."""
        with self._lock:
            if order_no:
                found = self._orders.get((shop_no, order_no))
                candidates: Iterable[Order] = [found] if found else []
            else:
                candidates = self._orders.values()
            chosen = []
            for order in candidates:
                if order.shop_no == shop_no and keep(order):
                    chosen.append(copy.deepcopy(order))
                    if len(chosen) >= limit:
                        break
            return chosen

    def expire(self, order_no: str, shop_no: str | None = None) -> Order:
        """Operator action: an unpaid order becomes overdue now (to test expiry without waiting)."""
        with self._lock:
            order = self._find(order_no, shop_no)
            if order is None:
                raise PayError(404, f"no order {order_no}")
            if order.state != "unpaid":
                raise PayError(409, f"order {order_no} is {order.state}, not unpaid")
            order.state = "expired"
            return copy.deepcopy(order)

    # -- payments ------------------------------------------------------------------------------

    def pay(self, order_no: str, succeeded: bool, *, page_key: str | None = None,
            shop_no: str | None = None) -> tuple[Order, Payment]:
        """The customer pays (or the card is declined): one new PayToken, the order updated."""
        now = self._clock()
        with self._lock:
            order = self._find(order_no, shop_no, page_key)
            if order is None:
                raise PayError(404, f"no order {order_no}")
            if page_key is not None and not secrets.compare_digest(page_key, order.page_key):
                raise PayError(403, "this payment link is not valid")
            status = pay_status(order, now)
            if status in PAID_CODES:
                raise PayError(409, f"order {order_no} is already paid")
            if status == CARD_DECLINED:
                raise PayError(409, f"order {order_no} was declined; the shop must create a new order")
            if status in OVERDUE_CODES:
                raise PayError(409, f"order {order_no} is overdue (payment period ended)")
            if not succeeded and order.pay_type == "A":
                raise PayError(409, "an ATM transfer cannot be declined; an unpaid ATM order becomes overdue")
            payment = Payment(
                pay_token=secrets.token_hex(32),
                order_no=order_no,
                shop_no=order.shop_no,
                succeeded=succeeded,
                at=now,
                auth_code=f"{secrets.randbelow(10**6):06d}" if order.pay_type == "C" and succeeded else "",
                callback="pending" if order.backend_url else "none",
            )
            order.state = "paid" if succeeded else "declined"
            order.paid_at = now if succeeded else None
            order.payments.append(payment.pay_token)
            self._payments[payment.pay_token] = payment
            return copy.deepcopy(order), copy.deepcopy(payment)

    def payment(self, pay_token: str) -> tuple[Order, Payment] | None:
        with self._lock:
            payment = self._payments.get(pay_token)
            if payment is None:
                return None
            return copy.deepcopy(self._orders[(payment.shop_no, payment.order_no)]), copy.deepcopy(payment)

    def record_attempt(self, pay_token: str, attempt: Attempt, state: str) -> bool:
        """Append a delivery attempt; False when the payment is gone (the sandbox was reset)."""
        with self._lock:
            payment = self._payments.get(pay_token)
            if payment is None:
                return False
            payment.attempts.append(attempt)
            payment.callback = state
            self._outcomes["callback_ack" if attempt.acknowledged else "callback_unacked"] += 1
            return True

    def set_callback_state(self, pay_token: str, state: str) -> None:
        with self._lock:
            payment = self._payments.get(pay_token)
            if payment is not None:
                payment.callback = state

    # -- observability -------------------------------------------------------------------------

    def count(self, service: str, outcome: str | None = None) -> None:
        with self._lock:
            self._calls[service] += 1
            if outcome:
                self._outcomes[outcome] += 1

    def count_outcome(self, outcome: str) -> None:
        with self._lock:
            self._outcomes[outcome] += 1

    def stats(self) -> dict[str, Any]:
        with self._lock:
            callbacks = Counter(p.callback for p in self._payments.values())
            return {
                "calls": dict(self._calls),
                "outcomes": dict(self._outcomes),
                "orders": len(self._orders),
                "payments": len(self._payments),
                "callbacks": dict(callbacks),
                "live_nonces": len(self._nonces),
                "uptime_seconds": round(time.monotonic() - self._started, 3),
            }

    # -- key changes -----------------------------------------------------------------------------

    def change_keys(self, new: Shop, *, keep_previous: bool, reply_with: str) -> dict[str, Any]:
        """The shop's keys become `new`; its current set stays accepted (as `previous`) if asked.
        KeyError for an unknown shop."""
        with self._lock:
            old = self.shops[new.shop_no]
            previous = dataclasses.replace(old, previous=None) if keep_previous else None
            self.shops[new.shop_no] = dataclasses.replace(new, previous=previous, reply_with=reply_with)
            return self._shop_view(self.shops[new.shop_no])

    def retire_previous_keys(self, shop_no: str) -> dict[str, Any]:
        """End a key change: only the current set is accepted from now on."""
        with self._lock:
            self.shops[shop_no] = dataclasses.replace(self.shops[shop_no], previous=None)
            return self._shop_view(self.shops[shop_no])

    def shop_views(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._shop_view(shop) for shop in self.shops.values()]

    @staticmethod
    def _shop_view(shop: Shop) -> dict[str, Any]:
        """Fingerprints only (core.shops.key_fingerprint), never keys."""
        previous = shop.previous.fingerprint if shop.previous else None
        return {"shop_no": shop.shop_no, "keys": shop.fingerprint, "previous": previous,
                "reply_with": shop.reply_with}

    def reset(self) -> None:
        with self._lock:
            self._nonces.clear()
            self._orders.clear()
            self._payments.clear()
            self._calls.clear()
            self._outcomes.clear()
