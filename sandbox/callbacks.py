"""Delivery of `{"ShopNo", "PayToken"}` to a BackendURL, with the bank's resend policy (§8).

A send is acknowledged only by HTTP 200 with a JSON body whose Status is "S"; anything else, a
timeout or a refused connection is resent after the resend interval, at most `max_sends` sends in
all. Work runs on a timer heap feeding a bounded thread pool, never on a request thread.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import requests

from sandbox.bank import Bank
from sandbox.faults import Faults
from sandbox.records import Attempt

__all__ = ["Notifier", "Scheduler"]

log = logging.getLogger(__name__)
_BODY_LIMIT = 200


class Scheduler:
    """Runs callables after a delay: one timer thread, a bounded pool of workers."""

    def __init__(self, workers: int) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._stopped = False
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox-worker")
        self._thread = threading.Thread(target=self._run, name="sandbox-timer", daemon=True)
        self._thread.start()

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        with self._cond:
            if self._stopped:
                return
            heapq.heappush(self._heap, (time.monotonic() + max(delay, 0.0), next(self._seq), fn))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                if self._stopped:
                    return
                _, _, fn = heapq.heappop(self._heap)
            self._pool.submit(self._guarded, fn)

    @staticmethod
    def _guarded(fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:  # one bad job must not kill a worker thread
            log.exception("sandbox background job failed")

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify_all()
        self._pool.shutdown(wait=False, cancel_futures=True)


class Notifier:
    """Tells a shop's BackendURL about a payment, resending until acknowledged or out of sends."""

    def __init__(
        self, bank: Bank, faults: Faults, scheduler: Scheduler, *, resend_interval: float, max_sends: int,
        timeout: float,
    ) -> None:
        self._bank = bank
        self._faults = faults
        self._scheduler = scheduler
        self._resend_interval = resend_interval
        self._max_sends = max_sends
        self._timeout = timeout

    def notify(self, shop_no: str, pay_token: str, backend_url: str) -> None:
        if not backend_url:
            return
        if self._faults.drop_callback():
            # The bank never calls: the shop's sweep must find the payment.
            self._bank.set_callback_state(pay_token, "dropped")
            return
        self._scheduler.call_later(0.0, lambda: self._send(shop_no, pay_token, backend_url, 1))

    def _send(self, shop_no: str, pay_token: str, url: str, number: int) -> None:
        attempt = self._post(shop_no, pay_token, url, number)
        last = number >= self._max_sends
        state = "delivered" if attempt.acknowledged else "failed" if last else "pending"
        if not self._bank.record_attempt(pay_token, attempt, state):
            return  # the sandbox was reset meanwhile
        if self._faults.duplicate_callback():
            duplicate = self._post(shop_no, pay_token, url, number, duplicate=True)
            self._bank.record_attempt(pay_token, duplicate, state)  # extra, outside the send budget
        if state == "pending":
            self._scheduler.call_later(
                self._resend_interval, lambda: self._send(shop_no, pay_token, url, number + 1)
            )

    def _post(
        self, shop_no: str, pay_token: str, url: str, number: int, *, duplicate: bool = False
    ) -> Attempt:
        at = datetime.now(UTC).isoformat()
        try:
            response = requests.post(
                url, json={"ShopNo": shop_no, "PayToken": pay_token}, timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            return Attempt(number, at, None, "", False, error=type(exc).__name__, duplicate=duplicate)
        body = response.content[:_BODY_LIMIT].decode("utf-8", "replace")
        try:
            answer = response.json()
        except ValueError:
            answer = None
        acknowledged = (
            response.status_code == 200 and isinstance(answer, dict) and answer.get("Status") == "S"
        )
        return Attempt(number, at, response.status_code, body, acknowledged, duplicate=duplicate)
