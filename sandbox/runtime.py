"""One running sandbox: the bank's state, its faults and its background work, wired together."""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any

from core.sinopac.timefmt import to_bank_minute
from sandbox import services
from sandbox.bank import Bank, pay_status
from sandbox.callbacks import Notifier, Scheduler
from sandbox.config import SandboxConfig, Shop
from sandbox.faults import Faults
from sandbox.records import Order, PayError, Payment

__all__ = ["Sandbox"]

log = logging.getLogger(__name__)


class Sandbox:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.bank = Bank(config.shops, nonce_ttl=config.nonce_ttl)
        self.faults = Faults(config.faults)
        self.scheduler = Scheduler(config.callback_workers)
        self.notifier = Notifier(
            self.bank, self.faults, self.scheduler, resend_interval=config.resend_interval,
            max_sends=config.max_sends, timeout=config.callback_timeout,
        )
        self.stopping = threading.Event()  # wakes injected latencies and hangs at shutdown

    def order_call(
        self, shop: Shop, service: str, message: dict[str, Any], *, misdirect: str = ""
    ) -> dict[str, Any]:
        inner, created = services.dispatch(self.bank, service, shop.shop_no, message, self.config.base_url)
        if created is not None:
            self._schedule_autopay(created)
        if misdirect and service == "OrderPayQuery" and inner.get("Status") == "S":
            inner = services.misdirected_pay_reply(self.bank, shop.shop_no, inner, misdirect)
        return inner

    def _schedule_autopay(self, order: Order) -> None:
        # The real sandbox pays ATM orders by itself after a while, unless the OrderNo ends in 9 (§8).
        delay = self.config.atm_autopay_seconds
        if order.pay_type != "A" or delay <= 0 or order.order_no.endswith("9"):
            return

        def autopay() -> None:
            try:
                self.pay(order.order_no, succeeded=True, shop_no=order.shop_no)
            except PayError as exc:
                log.info("autopay of %s skipped: %s", order.order_no, exc)

        self.scheduler.call_later(delay, autopay)

    def pay(self, order_no: str, *, succeeded: bool, page_key: str | None = None,
            shop_no: str | None = None) -> tuple[Order, Payment]:
        """A customer pays (or is declined): a PayToken, then the BackendURL is told about it."""
        order, payment = self.bank.pay(order_no, succeeded, page_key=page_key, shop_no=shop_no)
        what = "paid" if succeeded else "declined"
        log.info("order %s %s, PayToken %s…", order_no, what, payment.pay_token[:8])
        self.notifier.notify(order.shop_no, payment.pay_token, order.backend_url)
        return order, payment

    def view(self, order_no: str, shop_no: str | None = None) -> dict[str, Any] | None:
        """The bank's view of an order, with every payment and every callback attempt."""
        order = self.bank.order(order_no, shop_no)
        if order is None:
            return None
        payments = []
        for token in order.payments:
            found = self.bank.payment(token)
            if found is None:
                continue
            payment = found[1]
            payments.append({
                "PayToken": payment.pay_token, "succeeded": payment.succeeded, "at": payment.at.isoformat(),
                "PayDate": to_bank_minute(payment.at), "callback": payment.callback,
                "attempts": [dataclasses.asdict(a) for a in payment.attempts],
            })
        return {
            "ShopNo": order.shop_no, "OrderNo": order.order_no, "TSNo": order.ts_no, "Amount": order.amount,
            "PayType": order.pay_type, "PayStatus": pay_status(order, self.bank.now()), "state": order.state,
            "PrdtName": order.prdt_name, "created_at": order.created_at.isoformat(),
            "paid_at": order.paid_at.isoformat() if order.paid_at else None,
            "ExpireDate": order.expire_minute(), "AtmPayNo": order.atm_pay_no or None,
            "ReturnURL": order.return_url, "BackendURL": order.backend_url,
            "links": services.links(self.config.base_url, order), "payments": payments,
        }

    def reset(self) -> None:
        """Forget every nonce, order, payment and count; faults back to their start settings."""
        self.bank.reset()
        self.faults.reset()

    def close(self) -> None:
        self.stopping.set()
        self.scheduler.stop()
