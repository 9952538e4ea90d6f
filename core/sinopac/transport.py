"""One HTTP request to the bank (PROTOCOL.md §1, §2): pooled session, total deadline, capped body.

Anything that is not a QPay answer (any status but 200, an HTML page, an empty, cut or oversized body,
JSON without a single envelope field) is a transport failure here: what a bank in maintenance or a
broken connection produces, retried like an outage and never called untrusted.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from core.logging import short_token
from core.secrets import Secret
from core.sinopac.errors import BankConnectionError, BankHTTPError, BankTimeout, MalformedReply, NotAnEnvelope
from core.sinopac.fields import CONTROL_CHARS

__all__ = [
    "DEFAULT_POOL_SIZE", "MAX_REPLY_BYTES", "Budget", "CallState", "Deadline", "Http", "Transport",
    "bank_pool", "bank_session", "close_http",
]

# The most of a reply we read: a real reply (300 OrderQuery rows, hex-encoded) is far smaller.
MAX_REPLY_BYTES = 1 << 20
_CHUNK = 64 * 1024
_SNIPPET = 120
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


class Deadline:
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


@dataclass
class CallState:
    """One service call (Nonce + Order) as it goes: its deadline, the PayToken to keep out of error
    text, and what its record will say (the last HTTP status, the key set that verified the reply)."""

    service: str
    deadline: Deadline
    token: str | None = None
    http_status: int | None = None
    key_set: str = ""  # "active" or "next" once a reply verified, "" until then


# What carries the requests: a requests.Session (the web's shared one, or a caller's: tests record or
# refuse what is sent through it) or the client's own urllib3 pool of the bank's host (bank_pool).
Http = requests.Session | urllib3.HTTPConnectionPool
# The headers requests adds by itself, kept on the urllib3 path so the bank sees the same request.
_DEFAULT_HEADERS = {"User-Agent": requests.utils.default_user_agent(), "Connection": "keep-alive"}


def bank_pool(base_url: str, pool_size: int = DEFAULT_POOL_SIZE) -> Http:
    """A bank client's own connections: urllib3's pool, called directly. requests' per-request
    machinery (a prepared request, cookie jars read and written, hooks, adapter lookups) was ~10% of
    a worker's CPU per settlement for four requests that need none of it. Verified like requests
    does by default (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, else certifi's bundle); through a proxy the
    environment names (HTTPS_PROXY, NO_PROXY), requests' session as before."""
    if requests.utils.get_environ_proxies(base_url):
        return bank_session(base_url, pool_size)
    # The pool of the bank's one host, not a PoolManager: no URL parsing and pool lookup per request.
    tls: dict[str, Any] = {}
    if urlsplit(base_url).scheme == "https":
        bundle = _ca_bundle() or requests.utils.DEFAULT_CA_BUNDLE_PATH
        tls = {"cert_reqs": "CERT_REQUIRED", "ca_certs": bundle}
    return urllib3.connection_from_url(base_url, maxsize=pool_size, retries=False, **tls)


def close_http(http: Http) -> None:
    """Release the pooled connections of either kind."""
    http.close()


def _ca_bundle() -> str | None:
    """The environment's CA bundle, as requests reads it (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE)."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")


def bank_session(base_url: str, pool_size: int = DEFAULT_POOL_SIZE) -> requests.Session:
    """The pooled HTTP session for the bank at `base_url`, shared by the web and the bank client.

    No hidden urllib3 retries: a retry decision belongs to the caller, who knows what is safe.
    """
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    # The environment's proxies (HTTPS_PROXY, NO_PROXY) and CA bundle (REQUESTS_CA_BUNDLE,
    # CURL_CA_BUNDLE) are read once, here, instead of on every request (requests' trust_env: ~6% of
    # a worker's CPU per settlement, bench/RESULTS.md). A session is built per process at start-up.
    session.trust_env = False
    session.proxies = requests.utils.get_environ_proxies(base_url)
    bundle = _ca_bundle()
    if bundle:
        session.verify = bundle
    return session


@contextmanager
def _transport_errors(what: str, service: str) -> Iterator[None]:
    """requests' and urllib3's failures as the client's typed transport errors (no cause chained: it
    could quote the request)."""
    try:
        yield
    except requests.Timeout as exc:
        raise BankTimeout(f"{what} timed out ({type(exc).__name__})", service=service) from None
    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
        raise BankConnectionError(
            f"{what} connection failed ({type(exc).__name__})", service=service
        ) from None
    except requests.RequestException as exc:
        raise MalformedReply(f"{what} failed ({type(exc).__name__})", service=service) from None
    # urllib3 called directly (bank_pool): its errors named as requests names them.
    except urllib3.exceptions.NewConnectionError:
        raise BankConnectionError(f"{what} connection failed (ConnectionError)", service=service) from None
    except urllib3.exceptions.TimeoutError as exc:
        name = "ConnectTimeout" if isinstance(exc, urllib3.exceptions.ConnectTimeoutError) else "ReadTimeout"
        raise BankTimeout(f"{what} timed out ({name})", service=service) from None
    except (OSError, urllib3.exceptions.HTTPError) as exc:  # a socket error met while streaming
        raise BankConnectionError(
            f"{what} connection failed ({type(exc).__name__})", service=service
        ) from None


def _closer(raw: Any) -> Callable[[], None]:
    """What requests' Response.close() does with urllib3's response: close it, give the connection
    back to the pool (kept open when the body was read to its end)."""
    def close() -> None:
        raw.close()
        raw.release_conn()

    return close


@dataclass(frozen=True)
class Transport:
    """Where and how one client reaches the bank; `secrets` are scrubbed from quoted bodies."""

    base: str
    http: Http
    connect_timeout: float
    read_timeout: float
    budget: Budget | None
    secrets: tuple[str, ...]

    @cached_property
    def _path(self) -> str:
        """The base URL's path: what a request line to the pool of its host names (origin-form)."""
        return urlsplit(self.base).path

    def post(self, call: CallState, endpoint: str, body: Mapping[str, Any], key_id: Secret) -> dict[str, Any]:
        """One HTTP request; returns a JSON object that at least looks like a QPay answer."""
        service, token = call.service, call.token
        what = f"{service}: {endpoint}"
        code, content = self._send(call, what, endpoint, body, key_id)
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

    def _send(
        self, call: CallState, what: str, endpoint: str, body: Mapping[str, Any], key_id: Secret
    ) -> tuple[int, bytes]:
        """The request sent within the deadline (after the budget's wait); its status and body."""
        service, deadline = call.service, call.deadline
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Accept": "application/json",
            "Accept-Encoding": "identity",  # the 1 MiB cap counts what we hold, not what was sent
            "X-KeyID": key_id.reveal(),
        }
        if self.budget is not None:
            deadline.extend(self.budget.acquire())
        remaining = deadline.remaining()
        if remaining <= 0:
            raise BankTimeout(f"{what}: the call's deadline passed before sending", service=service)
        timeout = (min(self.connect_timeout, remaining), min(self.read_timeout, remaining))
        with _transport_errors(what, service):
            if isinstance(self.http, requests.Session):
                response = self.http.post(self.base + endpoint, data=data, headers=headers, timeout=timeout,
                                          allow_redirects=False, stream=True)
                raw, close = response.raw, response.close
            else:
                raw = self.http.urlopen("POST", self._path + endpoint, body=data,
                                        headers={**_DEFAULT_HEADERS, **headers}, retries=False,
                                        redirect=False, preload_content=False, decode_content=False,
                                        timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]))
                close = _closer(raw)
            try:
                call.http_status = raw.status
                content = self._read(raw, deadline, what, service)
            finally:
                close()
        return raw.status, content

    def _read(self, raw: Any, deadline: Deadline, what: str, service: str) -> bytes:
        """The body (of urllib3's response), at most MAX_REPLY_BYTES, within the call's deadline
        (checked between reads, and each read waits no longer than what is left of it)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            remaining = deadline.remaining()
            if remaining <= 0:
                raise BankTimeout(f"{what}: reply not complete within the call's deadline", service=service)
            sock = getattr(getattr(raw, "connection", None), "sock", None)
            if sock is not None:
                sock.settimeout(min(self.read_timeout, remaining))
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
        for secret in self.secrets:
            text = re.sub(re.escape(secret), "***", text, flags=re.IGNORECASE)
        if token:
            text = text.replace(token, short_token(token))
        text = CONTROL_CHARS.sub(" ", text).strip()
        if not text:
            return "(empty body)"
        return repr(text[:_SNIPPET] + ("…" if len(text) > _SNIPPET else ""))
