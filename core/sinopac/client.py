"""The only module that talks HTTP to the bank (PROTOCOL.md §1, §2, §7).

Every service call is `POST {base}Nonce` for a fresh nonce, then `POST {base}Order` with the sealed
envelope, both with the X-KeyID header and explicit (connect, read) timeouts on one pooled
requests.Session. Failures surface as the typed tree of core.sinopac.errors, so the caller can tell a
retry that may help (transport) from one that never will (protocol, rejection).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any, Literal, Protocol, TypeVar

import requests
import urllib3
from requests.adapters import HTTPAdapter

from core.secrets import Secret
from core.settings import Settings
from core.shops import KeySetName, ShopCredentials, key_fingerprint
from core.sinopac import envelope, results
from core.sinopac.errors import (
    BankConnectionError,
    BankHTTPError,
    BankProtocolError,
    BankRejection,
    BankTimeout,
    BankTransportError,
    EnvelopeRefused,
    MalformedReply,
    NotAnEnvelope,
    QPayError,
    SignatureMismatch,
    UndecryptableReply,
)
from core.sinopac.timefmt import to_bank_date, to_bank_minute
from core.sinopac.types import BankCallRecord, OrderCreateResult, OrderQueryResult, PayQueryResult

__all__ = [
    "DEFAULT_POOL_SIZE", "MAX_REPLY_BYTES", "BankClient", "Budget", "ClientFor", "Observer", "QPayClient",
    "client_of", "short_token",
]

log = logging.getLogger(__name__)

Observer = Callable[[BankCallRecord], None]
T = TypeVar("T")
Outcome = Literal["ok", "rejected", "transport_error", "protocol_error"]

_FORBIDDEN_CHARS = re.compile(r"['\"%]")  # §9.1: no ' " % in OrderNo and PrdtName
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_AMOUNT = 999_999_999  # §9.1: at most 9 digits
_SNIPPET = 120
# The most of a reply we read: a real reply (300 OrderQuery rows, hex-encoded) is far smaller.
MAX_REPLY_BYTES = 1 << 20
_CHUNK = 64 * 1024
# Top-level fields of a QPay answer (an envelope, or an envelope-level error): a JSON object with none
# of them is not the bank's API speaking (a proxy's or a maintenance page's JSON).
_ENVELOPE_KEYS = frozenset(
    {"Version", "ShopNo", "APIService", "Sign", "Nonce", "Message", "Status", "Description"}
)
# Connections kept open to the bank; requests' own default. A process whose client is shared by more
# threads or greenlets than this (a threads/gevent worker pool) must pass a larger `pool_size`.
DEFAULT_POOL_SIZE = 10


class Budget(Protocol):
    """The shared bank request budget (core/budget.py): blocks until one more request may be sent."""

    def acquire(self) -> float: ...


class _Deadline:
    """One total deadline for a service call (Nonce + Order), not a timeout per socket read.

    Time spent waiting for the request budget is not the bank's slowness: it moves the deadline.
    """

    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds
        self.waited = 0.0  # seconds spent waiting for the budget (not the bank's time)

    def remaining(self) -> float:
        return self._end - time.monotonic()

    def extend(self, seconds: float) -> None:
        self._end += seconds
        self.waited += seconds


class BankClient(Protocol):
    """What services need from the bank; QPayClient implements it, tests pass fakes."""

    def create_order(
        self,
        *,
        order_no: str,
        amount: int,
        pay_type: str,
        product_name: str,
        return_url: str,
        backend_url: str,
        expire_date: date | None = None,
        card_exp_minutes: int = 30,
        auto_billing: str = "Y",
        memo: str | None = None,
        param1: str | None = None,
        param2: str | None = None,
        param3: str | None = None,
    ) -> OrderCreateResult: ...

    def query_orders(
        self,
        *,
        order_no: str | None = None,
        pay_type: str | None = None,
        order_from: datetime | None = None,
        order_to: datetime | None = None,
        pay_from: datetime | None = None,
        pay_to: datetime | None = None,
        pay_flag: str | None = None,
    ) -> OrderQueryResult: ...

    def pay_query(self, pay_token: str) -> PayQueryResult: ...


# Per shop and key configuration: the key set the bank refused and the other one it then took (every
# client of this process shares it; the web builds a client per request).
_REFUSED: dict[tuple[str, ...], KeySetName] = {}

# The bank client of a shop, by ShopNo (raises core.shops.UnknownShop for a shop not configured).
ClientFor = Callable[[str], BankClient]


def client_of(clients: BankClient | ClientFor, shop_no: str) -> BankClient:
    """`clients` is one shop's client (single-shop callers, tests) or a ClientFor: the shop's client."""
    if hasattr(clients, "pay_query"):
        return clients  # type: ignore[return-value]
    return clients(shop_no)  # type: ignore[operator]


def short_token(pay_token: str) -> str:
    """A PayToken as it may appear in logs, records and errors: its first 8 characters + "…"."""
    return pay_token[:8] + "…"


def _check_text(name: str, value: str, *, limit: int, required: bool = True, plain: bool = False) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    if required and not value.strip():
        raise ValueError(f"{name} is required")
    if len(value) > limit:
        raise ValueError(f"{name} is longer than {limit} characters")
    if _CONTROL.search(value):
        raise ValueError(f"{name} contains control characters")
    if plain and _FORBIDDEN_CHARS.search(value):
        raise ValueError(f"{name} must not contain ' \" or %")


def _optional(message: dict[str, Any], key: str, name: str, value: str | None, limit: int) -> None:
    # §12.1: blank values are never sent (implementations disagree on how they are signed).
    if value is None or not value.strip():
        return
    _check_text(name, value, limit=limit)
    message[key] = value


def _window(
    message: dict[str, Any], keys: tuple[str, str], names: tuple[str, str], pair: tuple[datetime | None, ...]
) -> None:
    start, end = pair
    if start is None and end is None:
        return
    if start is None or end is None:
        raise ValueError(f"{names[0]} and {names[1]} must be given together")
    for name, value in zip(names, pair, strict=True):
        if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{name} must be a timezone-aware datetime")
    if start > end:
        raise ValueError(f"{names[0]} is after {names[1]}")
    message[keys[0]] = to_bank_minute(start)
    message[keys[1]] = to_bank_minute(end)


class QPayClient:
    """QPay Web API client for one shop; safe to reuse for many calls, close() when done.

    `pool_size` caps the connections kept open: give it at least the number of threads or greenlets
    sharing the client, or urllib3 throws the extra connections away ("Connection pool is full") and
    every call beyond the cap opens a new one. Connections are opened on demand, so a large cap
    costs nothing where concurrency is low.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        shop: ShopCredentials | None = None,
        http: requests.Session | None = None,
        observer: Observer | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
        budget: Budget | None = None,
    ) -> None:
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise ValueError("pool_size must be a whole number of connections, at least 1")
        creds = settings.shop if shop is None else shop
        self._shop_no = creds.shop_no
        # The active set signs every request; a reply is opened with it, then with the other set (a key
        # change at the bank in progress) before it is called untrusted.
        self._key_sets: tuple[tuple[KeySetName, Secret, Secret], ...] = tuple(
            (name, keys.hash_id, keys.key_id) for name, keys in creds.key_sets()
        )
        for name, _, key_id in self._key_sets:
            value = key_id.reveal()
            if not (value.isascii() and value.isprintable() and value == value.strip()):
                raise ValueError(f"shop {self._shop_no}: the {name} X-KeyID must be printable ASCII "
                                 "(it is sent as a header)")
        # Every string whose appearance in an error would be a leak.
        self._secrets = tuple(s for s in creds.secrets() if s)
        self._base = (
            settings.api_base_url if settings.api_base_url.endswith("/") else settings.api_base_url + "/"
        )
        self._connect_timeout = settings.connect_timeout
        self._read_timeout = settings.read_timeout
        # One call (Nonce + Order) gets this long in all, however the bank drips its bytes.
        self._call_timeout = settings.connect_timeout + settings.read_timeout
        self._observer = observer
        self._resend_with_other = True
        # Which refusal memory this client shares: its shop and exact key sets (a new deploy's other
        # configuration starts afresh).
        self._refusal_key = (self._shop_no, *(key_fingerprint(h, k) for _, h, k in self._key_sets))
        self._budget = budget
        self._owns_http = http is None
        self._http = http if http is not None else self._new_session(pool_size, self._base)

    @staticmethod
    def _new_session(pool_size: int, base: str) -> requests.Session:
        session = requests.Session()
        # No hidden urllib3 retries: a retry decision belongs to the caller, who knows what is safe.
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool_size, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        # The environment's proxies (HTTPS_PROXY, NO_PROXY) and CA bundle (REQUESTS_CA_BUNDLE,
        # CURL_CA_BUNDLE) are read once, here, instead of on every request (requests' trust_env: ~6% of
        # a worker's CPU per settlement, bench/RESULTS.md). A client is built per process at start-up.
        session.trust_env = False
        session.proxies = requests.utils.get_environ_proxies(base)
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle:
            session.verify = bundle
        return session

    def __repr__(self) -> str:
        return f"QPayClient(shop_no={self._shop_no!r}, base={self._base!r})"

    @property
    def shop_no(self) -> str:
        return self._shop_no

    def with_key_set(self, name: KeySetName) -> QPayClient:
        """A client of the same shop that signs with `name` as its active set (for `shops check`)."""
        chosen = [ks for ks in self._key_sets if ks[0] == name]
        if not chosen:
            raise ValueError(f"shop {self._shop_no} has no {name} key set")
        twin = object.__new__(QPayClient)
        twin.__dict__.update(self.__dict__)
        twin._key_sets = (chosen[0], *(ks for ks in self._key_sets if ks[0] != name))
        twin._resend_with_other = False  # the question is whether the bank takes this set
        twin._owns_http = False
        return twin

    def nonce(self) -> str:
        """A bare Nonce call (§2): the cheapest question the bank answers for this shop's X-KeyID."""
        return self._nonce("Nonce", [None], None, self._key_sets[0][2], _Deadline(self._call_timeout))

    def close(self) -> None:
        """Release pooled connections (only of a session this client created itself)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> QPayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the three services -------------------------------------------------------------------

    def create_order(
        self,
        *,
        order_no: str,
        amount: int,
        pay_type: str,
        product_name: str,
        return_url: str,
        backend_url: str,
        expire_date: date | None = None,
        card_exp_minutes: int = 30,
        auto_billing: str = "Y",
        memo: str | None = None,
        param1: str | None = None,
        param2: str | None = None,
        param3: str | None = None,
        exp_billing_days: int | None = None,
    ) -> OrderCreateResult:
        """OrderCreate (§9.1); `amount` is ×100. Raises ValueError before sending on bad input."""
        _check_text("order_no", order_no, limit=50, plain=True)
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= _MAX_AMOUNT:
            raise ValueError(f"amount must be a positive whole number of hundredths, at most {_MAX_AMOUNT}")
        if pay_type not in ("A", "C"):
            raise ValueError("pay_type must be 'A' (ATM) or 'C' (card)")
        _check_text("product_name", product_name, limit=60, plain=True)
        _check_text("return_url", return_url, limit=255)
        _check_text("backend_url", backend_url, limit=255, required=False)
        message: dict[str, Any] = {
            "ShopNo": self._shop_no,
            "OrderNo": order_no,
            "Amount": amount,
            "CurrencyID": "TWD",
            "PayType": pay_type,
            "PrdtName": product_name,
            "ReturnURL": return_url,
        }
        if backend_url.strip():
            message["BackendURL"] = backend_url
        if pay_type == "A":
            if expire_date is None or isinstance(expire_date, datetime) or not isinstance(expire_date, date):
                raise ValueError("PayType A needs expire_date (a date, the last day to pay)")
            message["ATMParam"] = {"ExpireDate": to_bank_date(expire_date)}
        else:
            if expire_date is not None:
                raise ValueError("expire_date applies only to PayType A")
            message["CardParam"] = self._card_param(card_exp_minutes, auto_billing, exp_billing_days)
        _optional(message, "Memo", "memo", memo, 30)
        _optional(message, "Param1", "param1", param1, 255)
        _optional(message, "Param2", "param2", param2, 255)
        _optional(message, "Param3", "param3", param3, 255)

        def parse(inner: dict[str, Any]) -> OrderCreateResult:
            # The Sign proves the bank wrote the reply, not that it answers this request.
            if inner.get("OrderNo") != order_no:
                raise MalformedReply("OrderCreate: reply is for a different OrderNo", service="OrderCreate")
            return results.to_create_result(inner, pay_type=pay_type)

        return self._call("OrderCreate", message, parse, key=order_no)

    @staticmethod
    def _card_param(exp_minutes: int, auto_billing: str, exp_billing_days: int | None) -> dict[str, Any]:
        if isinstance(exp_minutes, bool) or not isinstance(exp_minutes, int) or not 1 <= exp_minutes <= 30:
            raise ValueError("card_exp_minutes must be a whole number from 1 to 30")
        if auto_billing not in ("Y", "N"):
            raise ValueError("auto_billing must be 'Y' or 'N'")
        param: dict[str, Any] = {"AutoBilling": auto_billing, "ExpMinutes": exp_minutes}
        if auto_billing == "N":
            if (
                isinstance(exp_billing_days, bool)
                or not isinstance(exp_billing_days, int)
                or not 1 <= exp_billing_days <= 7
            ):
                raise ValueError("auto_billing 'N' needs exp_billing_days from 1 to 7")
            param["ExpBillingDays"] = exp_billing_days
        elif exp_billing_days is not None:
            raise ValueError("exp_billing_days applies only when auto_billing is 'N'")
        return param

    def query_orders(
        self,
        *,
        order_no: str | None = None,
        pay_type: str | None = None,
        order_from: datetime | None = None,
        order_to: datetime | None = None,
        pay_from: datetime | None = None,
        pay_to: datetime | None = None,
        pay_flag: str | None = None,
    ) -> OrderQueryResult:
        """OrderQuery (§9.3); at least one condition; windows are aware datetimes, sent in Taipei time."""
        message: dict[str, Any] = {"ShopNo": self._shop_no}
        if order_no is not None:
            _check_text("order_no", order_no, limit=50, plain=True)
            message["OrderNo"] = order_no
        if pay_type is not None:
            if pay_type not in ("A", "C"):
                raise ValueError("pay_type must be 'A' or 'C'")
            message["PayType"] = pay_type
        _window(
            message, ("OrderDateTimeS", "OrderDateTimeE"), ("order_from", "order_to"), (order_from, order_to)
        )
        _window(message, ("PayDateTimeS", "PayDateTimeE"), ("pay_from", "pay_to"), (pay_from, pay_to))
        if pay_flag is not None:
            if pay_flag not in ("Y", "N", "O"):
                raise ValueError("pay_flag must be 'Y', 'N' or 'O'")
            message["PayFlag"] = pay_flag
        if len(message) == 1:
            raise ValueError("OrderQuery needs at least one condition besides the shop")
        key = order_no or "window"
        return self._call("OrderQuery", message, results.to_query_result, key=key)

    def pay_query(self, pay_token: str) -> PayQueryResult:
        """OrderPayQuery (§9.5): the bank's signed word on what a PayToken paid."""
        _check_text("pay_token", pay_token, limit=255)
        if pay_token != pay_token.strip() or not pay_token.isascii():
            raise ValueError("pay_token must be printable ASCII without surrounding spaces")
        key = short_token(pay_token)

        def parse(inner: dict[str, Any]) -> PayQueryResult:
            if inner.get("PayToken") not in (None, "", pay_token):
                raise MalformedReply(
                    "OrderPayQuery: reply is for a different PayToken", service="OrderPayQuery"
                )
            return results.to_pay_query_result(inner)

        message = {"ShopNo": self._shop_no, "PayToken": pay_token}
        return self._call("OrderPayQuery", message, parse, key=key, token=pay_token)

    # -- one call: Nonce, Order, open the reply ------------------------------------------------

    def _call(
        self,
        service: str,
        message: Mapping[str, Any],
        parse: Callable[[dict[str, Any]], T],
        *,
        key: str,
        token: str | None = None,
    ) -> T:
        """Nonce, Order, open and type the reply; the observer gets exactly one record, whatever happens."""
        started_at = datetime.now(UTC)
        t0 = time.monotonic()
        status: list[int | None] = [None]
        key_set: list[str] = [""]
        error: QPayError | None = None
        signers = self._signers()
        deadline = _Deadline(self._call_timeout)
        try:
            try:
                reply = self._exchange(service, message, status, token, signers[0], deadline)
                inner = self._open(service, reply, key_set)
            except EnvelopeRefused:
                if len(signers) < 2:
                    raise
                # A key change at the bank: it no longer takes this set. Nothing was processed, so the
                # same request signed with the other set is safe, and waits for no retry.
                log.warning("shop %s: the bank refused the %s key set on %s; sending with the %s set",
                            self._shop_no, signers[0][0], service, signers[1][0],
                            extra={"shop_no": self._shop_no, "key_set": signers[1][0]})
                reply = self._exchange(service, message, status, token, signers[1], deadline)
                inner = self._open(service, reply, key_set)
                # The bank took the other set: sign with it first from now on (in this process), so a
                # bank that switched at once refuses one request per process, not every one.
                _REFUSED[self._refusal_key] = signers[0][0]
            try:
                return parse(inner)
            except QPayError:
                raise
            except Exception as exc:  # RecursionError, TypeError...: a parser's surprise is a bad reply
                raise MalformedReply(
                    f"{service}: reply content does not parse ({type(exc).__name__})", service=service
                ) from None
        except QPayError as exc:
            error = exc
            raise
        except Exception as exc:  # never recorded as ok; the caller sees the bug itself
            error = MalformedReply(f"{service}: call failed ({type(exc).__name__})", service=service)
            raise
        finally:
            self._emit(
                BankCallRecord(
                    api_service=service,
                    key=key,
                    started_at=started_at,
                    duration_ms=int(max(0.0, time.monotonic() - t0 - deadline.waited) * 1000),
                    http_status=status[0],
                    outcome="ok" if error is None else _outcome_of(error),
                    error=None if error is None else str(error),
                    shop_no=self._shop_no,
                    key_set=key_set[0],
                )
            )

    def _open(self, service: str, reply: Any, key_set: list[str]) -> dict[str, Any]:
        """Open a reply with the active set, then with the other one; key_set[0] names the one that
        verified it.

        A BankRejection is a verified reply too (Status F): it is raised at once, as is a reply that
        no set can open (the first set's error, the one an operator expects to read).
        """
        first: BankProtocolError | None = None
        for name, hash_id_, _ in self._key_sets:
            try:
                inner = envelope.open_reply(service, reply, hash_id=hash_id_.reveal())
            except (UndecryptableReply, SignatureMismatch) as exc:
                first = first or exc
                continue
            except BankRejection:
                key_set[0] = name
                raise
            key_set[0] = name
            if name != self._key_sets[0][0]:
                log.warning("shop %s: %s reply verified with the %s key set, not the %s one (a key change "
                            "at the bank?)", self._shop_no, service, name, self._key_sets[0][0],
                            extra={"shop_no": self._shop_no, "key_set": name})
            return inner
        assert first is not None
        raise first

    def _signers(self) -> tuple[tuple[KeySetName, Secret, Secret], ...]:
        """The sets to sign with, in order: the active one first, unless the bank refused it in this
        process since start (then the other). Only one set without fallback for `with_key_set`."""
        if not self._resend_with_other:
            return self._key_sets[:1]
        refused = _REFUSED.get(self._refusal_key)
        if refused == self._key_sets[0][0] and len(self._key_sets) > 1:
            return (self._key_sets[1], self._key_sets[0])
        return self._key_sets

    def _exchange(
        self,
        service: str,
        message: Mapping[str, Any],
        status: list[int | None],
        token: str | None,
        signer: tuple[KeySetName, Secret, Secret],
        deadline: _Deadline,
    ) -> dict[str, Any]:
        """Nonce, then the sealed Order request, both under `signer`'s X-KeyID; the raw reply."""
        _, hash_id_, key_id = signer
        nonce = self._nonce(service, status, token, key_id, deadline)
        body = envelope.seal_request(service, message, shop_no=self._shop_no, nonce=nonce,
                                     hash_id=hash_id_.reveal())
        return self._post(service, "Order", body, status, token, key_id, deadline)

    def _emit(self, record: BankCallRecord) -> None:
        if self._observer is None:
            return
        try:
            self._observer(record)
        except Exception:  # the observer is bookkeeping; it must never break a bank call
            log.warning("bank call observer failed for %s", record.api_service, exc_info=True)

    def _nonce(
        self, service: str, status: list[int | None], token: str | None, key_id: Secret, deadline: _Deadline
    ) -> str:
        reply = self._post(service, "Nonce", {"ShopNo": self._shop_no}, status, token, key_id, deadline)
        nonce = reply.get("Nonce")
        if nonce is None and ("Status" in reply or "Description" in reply):
            description = _CONTROL.sub(" ", str(reply.get("Description")))[:80]
            raise EnvelopeRefused(f"{service}: Nonce refused with an unsigned error "
                                  f"(Description={description})", service=service)
        if not isinstance(nonce, str) or not nonce or not nonce.isascii() or not nonce.isprintable():
            raise MalformedReply(f"{service}: Nonce reply lacks a usable Nonce", service=service)
        return nonce

    def _post(
        self,
        service: str,
        endpoint: str,
        body: Mapping[str, Any],
        status: list[int | None],
        token: str | None,
        key_id: Secret,
        deadline: _Deadline,
    ) -> dict[str, Any]:
        """One HTTP request; returns a JSON object that at least looks like a QPay answer.

        Anything that is not one (any status but 200, an HTML page, an empty, cut or oversized body,
        JSON without a single envelope field) is a transport failure: what a bank in maintenance or
        a broken connection produces, retried like an outage and never called untrusted.
        """
        what = f"{service}: {endpoint}"
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Accept": "application/json",
            "Accept-Encoding": "identity",  # the 1 MiB cap counts what we hold, not what was sent
            "X-KeyID": key_id.reveal(),
        }
        if self._budget is not None:
            deadline.extend(self._budget.acquire())
        remaining = deadline.remaining()
        if remaining <= 0:
            raise BankTimeout(f"{what}: the call's deadline passed before sending", service=service)
        try:
            response = self._http.post(
                self._base + endpoint,
                data=data,
                headers=headers,
                timeout=(min(self._connect_timeout, remaining), min(self._read_timeout, remaining)),
                allow_redirects=False,
                stream=True,
            )
            try:
                status[0] = response.status_code
                content = self._read(response, deadline, self._read_timeout, what, service)
            finally:
                response.close()
        except requests.Timeout as exc:
            raise BankTimeout(f"{what} timed out ({type(exc).__name__})", service=service) from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise BankConnectionError(
                f"{what} connection failed ({type(exc).__name__})", service=service
            ) from None
        except requests.RequestException as exc:
            raise MalformedReply(f"{what} failed ({type(exc).__name__})", service=service) from None
        except (OSError, urllib3.exceptions.HTTPError) as exc:  # a socket error met while streaming
            raise BankConnectionError(
                f"{what} connection failed ({type(exc).__name__})", service=service
            ) from None
        code = response.status_code
        if code != 200:
            raise BankHTTPError(
                f"{what} answered HTTP {code}: {self._snippet(content, token)}", service=service, status=code
            )
        try:
            reply = json.loads(content.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise NotAnEnvelope(
                f"{what} reply is not JSON: {self._snippet(content, token)}", service=service
            ) from None
        if not isinstance(reply, dict) or not _ENVELOPE_KEYS.intersection(reply):
            raise NotAnEnvelope(
                f"{what} reply is no QPay answer: {self._snippet(content, token)}", service=service
            )
        return reply

    @staticmethod
    def _read(
        response: requests.Response, deadline: _Deadline, read_timeout: float, what: str, service: str
    ) -> bytes:
        """The body, at most MAX_REPLY_BYTES, within the call's deadline (checked between reads, and
        each read waits no longer than what is left of it)."""
        raw = response.raw
        chunks: list[bytes] = []
        size = 0
        while True:
            remaining = deadline.remaining()
            if remaining <= 0:
                raise BankTimeout(f"{what}: reply not complete within the call's deadline", service=service)
            sock = getattr(getattr(raw, "connection", None), "sock", None)
            if sock is not None:
                sock.settimeout(min(read_timeout, remaining))
            try:
                chunk = raw.read1(_CHUNK)
            except (TimeoutError, urllib3.exceptions.ReadTimeoutError):
                raise BankTimeout(f"{what}: reply not complete within the call's deadline",
                                  service=service) from None
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > MAX_REPLY_BYTES:
                raise NotAnEnvelope(f"{what}: reply larger than {MAX_REPLY_BYTES} bytes", service=service)
            chunks.append(chunk)

    def _snippet(self, content: bytes, token: str | None) -> str:
        """A short, printable, secret-free excerpt of an untrusted body for the error text."""
        text = content[:400].decode("utf-8", "replace")
        for secret in self._secrets:
            text = re.sub(re.escape(secret), "***", text, flags=re.IGNORECASE)
        if token:
            text = text.replace(token, short_token(token))
        text = _CONTROL.sub(" ", text).strip()
        if not text:
            return "(empty body)"
        return repr(text[:_SNIPPET] + ("…" if len(text) > _SNIPPET else ""))


def _outcome_of(exc: QPayError) -> Outcome:
    if isinstance(exc, BankTransportError):
        return "transport_error"
    if isinstance(exc, BankRejection):
        return "rejected"
    if isinstance(exc, BankProtocolError):
        return "protocol_error"
    return "protocol_error"
