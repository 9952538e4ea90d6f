"""The /sandbox admin API: faults, reset, key changes, and paying or expiring an order by hand."""

from __future__ import annotations

from typing import Any

from core.settings import SettingsError
from sandbox.config import shop_from_keys
from sandbox.faults import FaultError
from sandbox.plumbing import BaseHandler
from sandbox.records import PayError

__all__ = ["AdminRoutes"]


class AdminRoutes(BaseHandler):
    """The operator's and the tests' side door into the bank's state."""

    def _faults_post(self) -> None:
        patch = self._json_body()
        try:
            self._json(200, self.sb.faults.update(patch))
        except FaultError as exc:
            self._error(400, str(exc))

    def _shop_keys(self, shop_no: str, action: str | None) -> None:
        """A key change at the bank: new keys for a shop (the old ones stay accepted unless
        keep_previous is false), or `/retire` to stop accepting the previous set."""
        body = self._json_body()
        try:
            if action == "retire":
                return self._json(200, self.sb.bank.retire_previous_keys(shop_no))
            if not isinstance(body, dict):
                return self._error(400, "send a JSON object: the new a1, a2, b1, b2 and key_id")
            keep, reply_with = body.get("keep_previous", True), body.get("reply_with", "current")
            if not isinstance(keep, bool) or reply_with not in ("current", "request"):
                return self._error(400, 'keep_previous: true or false; reply_with: "current" or "request"')
            return self._json(200, self.sb.bank.change_keys(shop_from_keys(shop_no, body),
                                                            keep_previous=keep, reply_with=reply_with))
        except SettingsError as exc:
            return self._error(400, str(exc))
        except KeyError:
            return self._error(404, f"no shop {shop_no}")

    def _reset(self) -> None:
        self._body()
        self.sb.reset()
        self._json(200, {"reset": True})

    def _order_view(self, order_no: str, action: str | None) -> None:
        if action:
            return self._error(405, f"use POST for /{action}")
        try:
            view = self.sb.view(order_no, self._shop_arg())
        except PayError as exc:
            return self._error(exc.status, str(exc))
        if view is None:
            return self._error(404, f"no order {order_no}")
        return self._json(200, view)

    def _order_post(self, order_no: str, action: str | None) -> None:
        body = self._json_body()
        if action is None:
            return self._error(405, "use GET to view an order")
        shop = self._shop_arg()
        try:
            if action == "expire":
                expired = self.sb.bank.expire(order_no, shop)
                return self._json(200, self.sb.view(order_no, expired.shop_no))
            outcome = body.get("outcome") if isinstance(body, dict) else None
            if outcome not in ("paid", "failed"):
                return self._error(400, 'send {"outcome": "paid"} or {"outcome": "failed"}')
            order, payment = self.sb.pay(order_no, succeeded=outcome == "paid", shop_no=shop)
        except PayError as exc:
            return self._error(exc.status, str(exc))
        reply: dict[str, Any] = {"OrderNo": order_no, "PayToken": payment.pay_token, "outcome": outcome,
                                 "PayStatus": (self.sb.view(order_no, order.shop_no) or {}).get("PayStatus")}
        if order.pay_type == "C":
            reply["return"] = {"url": order.return_url,
                               "form": {"ShopNo": order.shop_no, "PayToken": payment.pay_token}}
        return self._json(200, reply)
