"""The bank client (PROTOCOL.md §1, §2, §9): the three services of one shop, and the interface for fakes.

Every service call is `POST {base}Nonce` for a fresh nonce, then `POST {base}Order` with the sealed
envelope (core.sinopac.calls), both with the X-KeyID header under one total deadline on one pool of
connections (core.sinopac.transport: urllib3's, or a requests.Session the caller passes). Failures
surface as the typed tree of core.sinopac.errors, so the caller can tell a retry that may help
(transport) from one that never will (protocol, rejection). Requests are the typed shapes of
core.sinopac.messages, shared with the fakes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeGuard, cast, runtime_checkable

import requests

from core.logging import short_token
from core.settings import Settings
from core.shops import KeySetName, ShopCredentials
from core.sinopac import results
from core.sinopac.calls import Caller, NonceAhead, signers_of
from core.sinopac.errors import MalformedReply
from core.sinopac.messages import (
    OrderCreateRequest,
    OrderQueryRequest,
    create_message,
    pay_query_message,
    query_message,
)
from core.sinopac.transport import DEFAULT_POOL_SIZE, Budget, Transport, bank_pool, close_http
from core.sinopac.types import Observer, OrderCreateResult, OrderQueryResult, PayQueryResult

__all__ = [
    "BankClient", "ClientFor", "ConfirmsAhead", "NonceAhead", "QPayClient", "client_of", "confirms_ahead",
]


@runtime_checkable
class BankClient(Protocol):
    """What services need from the bank; QPayClient implements it, tests pass fakes."""

    def create_order(self, request: OrderCreateRequest) -> OrderCreateResult: ...

    def query_orders(self, request: OrderQueryRequest) -> OrderQueryResult: ...

    def pay_query(self, pay_token: str) -> PayQueryResult: ...

    def close(self) -> None: ...


@runtime_checkable
class ConfirmsAhead(Protocol):
    """A client that can fetch a confirming OrderQuery's Nonce while its OrderPayQuery is in flight."""

    def confirmation_ahead(self) -> NonceAhead: ...

    def pay_query(self, pay_token: str, *, confirm_ahead: NonceAhead | None = None) -> PayQueryResult: ...

    def query_orders(
        self, request: OrderQueryRequest, *, ahead: NonceAhead | None = None
    ) -> OrderQueryResult: ...


# The bank client of a shop, by ShopNo (raises core.shops.UnknownShop for a shop not configured).
ClientFor = Callable[[str], BankClient]


_IMPLEMENTS: dict[tuple[type, type], bool] = {}


def _implements(cls: type, protocol: type) -> bool:
    """A class's answer to a protocol check, once: isinstance on a runtime protocol inspects every
    member at each call (~9 µs; a settlement asked three times)."""
    found = _IMPLEMENTS.get((cls, protocol))
    if found is None:
        found = _IMPLEMENTS[(cls, protocol)] = issubclass(cls, protocol)
    return found


def confirms_ahead(client: object) -> TypeGuard[ConfirmsAhead]:
    return _implements(type(client), ConfirmsAhead)


def client_of(clients: BankClient | ClientFor, shop_no: str) -> BankClient:
    """`clients` is one shop's client (single-shop callers, tests) or a ClientFor: the shop's client."""
    if _implements(type(clients), BankClient):
        return cast(BankClient, clients)
    return cast(ClientFor, clients)(shop_no)


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
        base = settings.api_base_url if settings.api_base_url.endswith("/") else settings.api_base_url + "/"
        self._owns_http = http is None
        self._http = http if http is not None else bank_pool(base, pool_size)
        # Every string whose appearance in an error would be a leak is scrubbed from quoted bodies.
        transport = Transport(base, self._http, settings.connect_timeout, settings.read_timeout, budget,
                              tuple(s for s in creds.secrets() if s))
        self._caller = Caller(creds.shop_no, signers_of(creds), transport, observer)

    def __repr__(self) -> str:
        return f"QPayClient(shop_no={self._shop_no!r}, base={self._caller.base!r})"

    @property
    def shop_no(self) -> str:
        return self._shop_no

    def with_key_set(self, name: KeySetName) -> QPayClient:
        """A client of the same shop that signs with `name` as its active set (for `shops check`)."""
        twin = object.__new__(QPayClient)
        twin.__dict__.update(self.__dict__)
        twin._caller = self._caller.signing_only(name)
        twin._owns_http = False
        return twin

    def nonce(self) -> str:
        """A bare Nonce call (§2): the cheapest question the bank answers for this shop's X-KeyID."""
        return self._caller.nonce()

    def close(self) -> None:
        """Release pooled connections (only of a session this client created itself)."""
        if self._owns_http:
            close_http(self._http)

    def __enter__(self) -> QPayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create_order(self, request: OrderCreateRequest) -> OrderCreateResult:
        """OrderCreate (§9.1); `amount` is ×100. Raises ValueError before sending on bad input."""
        message = create_message(self._shop_no, request)

        def parse(inner: dict[str, Any]) -> OrderCreateResult:
            # The Sign proves the bank wrote the reply, not that it answers this request.
            if inner.get("OrderNo") != request.order_no:
                raise MalformedReply("OrderCreate: reply is for a different OrderNo", service="OrderCreate")
            return results.to_create_result(inner, pay_type=request.pay_type)

        return self._caller.call("OrderCreate", message, parse, key=request.order_no)

    def query_orders(
        self, request: OrderQueryRequest, *, ahead: NonceAhead | None = None
    ) -> OrderQueryResult:
        """OrderQuery (§9.3); at least one condition; windows are aware datetimes, sent in Taipei time.
        `ahead`: its Nonce, fetched earlier (confirmation_ahead)."""
        message = query_message(self._shop_no, request)
        return self._caller.call("OrderQuery", message, results.to_query_result,
                                 key=request.order_no or "window", ahead=ahead)

    def confirmation_ahead(self) -> NonceAhead:
        """The Nonce of an OrderQuery to come, for `pay_query(confirm_ahead=)` to fetch while its own
        Order request is in flight and `query_orders(ahead=)` to use: confirming a payment costs one
        bank round trip less (the nonce is dropped unused if no confirmation follows)."""
        return NonceAhead("OrderQuery")

    def pay_query(self, pay_token: str, *, confirm_ahead: NonceAhead | None = None) -> PayQueryResult:
        """OrderPayQuery (§9.5): the bank's signed word on what a PayToken paid. `confirm_ahead`
        (confirmation_ahead) is started once this call's Nonce is granted."""
        message = pay_query_message(self._shop_no, pay_token)

        def parse(inner: dict[str, Any]) -> PayQueryResult:
            if inner.get("PayToken") not in (None, "", pay_token):
                raise MalformedReply(
                    "OrderPayQuery: reply is for a different PayToken", service="OrderPayQuery"
                )
            return results.to_pay_query_result(inner)

        return self._caller.call("OrderPayQuery", message, parse, key=short_token(pay_token), token=pay_token,
                                 then=confirm_ahead)
