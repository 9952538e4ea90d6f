"""One service call to the bank (PROTOCOL.md §2, §7): Nonce, sealed Order, the reply opened and typed.

The key sets of a shop live here: requests are signed with the active set, a reply is verified with
either set (a key change at the bank in progress), and a bank that refuses the active set is asked
again, once, with the other. The observer gets exactly one BankCallRecord per call, whatever happens.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from core.secrets import Secret
from core.shops import KeySetName, ShopCredentials, key_fingerprint
from core.sinopac import envelope
from core.sinopac.ahead import NonceAhead
from core.sinopac.errors import (
    BankProtocolError,
    BankRejection,
    BankTransportError,
    EnvelopeRefused,
    MalformedReply,
    QPayError,
    SignatureMismatch,
    UndecryptableReply,
)
from core.sinopac.fields import CONTROL_CHARS
from core.sinopac.transport import CallState, Deadline, Transport
from core.sinopac.types import BankCallRecord, Observer

__all__ = ["Caller", "NonceAhead", "Signer", "signers_of"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Outcome = Literal["ok", "rejected", "transport_error", "protocol_error"]
# A key set as the client signs with it: its name, HashID and X-KeyID.
Signer = tuple[KeySetName, Secret, Secret]

# Per shop and key configuration: the key set the bank refused and the other one it then took (every
# client of this process shares it; the web builds a client per request).
_REFUSED: dict[tuple[str, ...], KeySetName] = {}


# A call's nonces fetched ahead: (its own, the next call's to start once its own is granted).
Aheads = tuple[NonceAhead | None, NonceAhead | None]


def signers_of(creds: ShopCredentials) -> tuple[Signer, ...]:
    """The shop's key sets, active first; an X-KeyID that cannot be a header is refused (unechoed)."""
    signers = tuple((name, keys.hash_id, keys.key_id) for name, keys in creds.key_sets())
    for name, _, key_id in signers:
        value = key_id.reveal()
        if not (value.isascii() and value.isprintable() and value == value.strip()):
            raise ValueError(f"shop {creds.shop_no}: the {name} X-KeyID must be printable ASCII "
                             "(it is sent as a header)")
    return signers


class Caller:
    """How one shop's calls are made: its key sets, its transport, one deadline per call, the observer.

    `resend_with_other` False: only the first set signs, with no second try (`shops check` asks whether
    the bank takes that very set).
    """

    def __init__(
        self,
        shop_no: str,
        key_sets: tuple[Signer, ...],
        transport: Transport,
        observer: Observer | None,
        *,
        resend_with_other: bool = True,
    ) -> None:
        self._shop_no = shop_no
        self._key_sets = key_sets
        self._transport = transport
        self._observer = observer
        self._resend_with_other = resend_with_other
        # One call (Nonce + Order) gets this long in all, however the bank drips its bytes.
        self._call_timeout = transport.connect_timeout + transport.read_timeout
        # Which refusal memory this caller shares: its shop and exact key sets (a new deploy's other
        # configuration starts afresh).
        self._refusal_key = (shop_no, *(key_fingerprint(h, k) for _, h, k in key_sets))

    @property
    def base(self) -> str:
        return self._transport.base

    def signing_only(self, name: KeySetName) -> Caller:
        """This shop's caller that signs with `name` alone, never falling back to the other set."""
        chosen = [ks for ks in self._key_sets if ks[0] == name]
        if not chosen:
            raise ValueError(f"shop {self._shop_no} has no {name} key set")
        key_sets = (chosen[0], *(ks for ks in self._key_sets if ks[0] != name))
        return Caller(self._shop_no, key_sets, self._transport, self._observer, resend_with_other=False)

    def nonce(self) -> str:
        """A bare Nonce call (§2): the cheapest question the bank answers for this shop's X-KeyID."""
        return self._nonce(CallState("Nonce", Deadline(self._call_timeout)), self._key_sets[0][2])

    def call(
        self,
        service: str,
        message: Mapping[str, Any],
        parse: Callable[[dict[str, Any]], T],
        *,
        key: str,
        token: str | None = None,
        ahead: NonceAhead | None = None,
        then: NonceAhead | None = None,
    ) -> T:
        """Nonce (or the one fetched `ahead`), Order, open and type the reply; the observer gets exactly
        one record, whatever happens. `then`: started once this call's Nonce is granted."""
        started_at = datetime.now(UTC)
        t0 = time.monotonic()
        error: QPayError | None = None
        state = CallState(service, Deadline(self._call_timeout), token)
        try:
            return _parsed(service, parse, self._trusted_reply(state, message, (ahead, then)))
        except QPayError as exc:
            error = exc
            raise
        except Exception as exc:  # never recorded as ok; the caller sees the bug itself
            error = MalformedReply(f"{service}: call failed ({type(exc).__name__})", service=service)
            raise
        finally:
            self._emit(BankCallRecord(
                api_service=service,
                key=key,
                started_at=started_at,
                duration_ms=int(max(0.0, time.monotonic() - t0 - state.deadline.waited) * 1000),
                http_status=state.http_status,
                outcome="ok" if error is None else _outcome_of(error),
                error=None if error is None else str(error),
                shop_no=self._shop_no,
                key_set=state.key_set,
            ))

    def _trusted_reply(self, state: CallState, message: Mapping[str, Any], nonces: Aheads) -> dict[str, Any]:
        """The verified inner reply; signed with the other set once if the bank refuses the first."""
        signers = self._signers()
        try:
            return self._open(state, self._exchange(state, message, signers[0], nonces))
        except EnvelopeRefused:
            if len(signers) < 2:
                raise
            # A key change at the bank: it no longer takes this set. Nothing was processed, so the
            # same request signed with the other set is safe, and waits for no retry.
            log.warning("shop %s: the bank refused the %s key set on %s; sending with the %s set",
                        self._shop_no, signers[0][0], state.service, signers[1][0],
                        extra={"shop_no": self._shop_no, "key_set": signers[1][0]})
            inner = self._open(state, self._exchange(state, message, signers[1], nonces))
            # The bank took the other set: sign with it first from now on (in this process), so a
            # bank that switched at once refuses one request per process, not every one.
            _REFUSED[self._refusal_key] = signers[0][0]
            return inner

    def _open(self, state: CallState, reply: Any) -> dict[str, Any]:
        """Open a reply with the active set, then with the other one; state.key_set names the one that
        verified it.

        A BankRejection is a verified reply too (Status F): it is raised at once, as is a reply that
        no set can open (the first set's error, the one an operator expects to read).
        """
        service = state.service
        first: BankProtocolError | None = None
        for name, hash_id_, _ in self._key_sets:
            try:
                inner = envelope.open_reply(service, reply, hash_id=hash_id_.reveal())
            except (UndecryptableReply, SignatureMismatch) as exc:
                first = first or exc
                continue
            except BankRejection:
                state.key_set = name
                raise
            state.key_set = name
            if name != self._key_sets[0][0]:
                log.warning("shop %s: %s reply verified with the %s key set, not the %s one (a key change "
                            "at the bank?)", self._shop_no, service, name, self._key_sets[0][0],
                            extra={"shop_no": self._shop_no, "key_set": name})
            return inner
        assert first is not None
        raise first

    def _signers(self) -> tuple[Signer, ...]:
        """The sets to sign with, in order: the active one first, unless the bank refused it in this
        process since start (then the other). Only one set without fallback for `with_key_set`."""
        if not self._resend_with_other:
            return self._key_sets[:1]
        refused = _REFUSED.get(self._refusal_key)
        if refused == self._key_sets[0][0] and len(self._key_sets) > 1:
            return (self._key_sets[1], self._key_sets[0])
        return self._key_sets

    def _exchange(
        self, state: CallState, message: Mapping[str, Any], signer: Signer, nonces: Aheads = (None, None)
    ) -> dict[str, Any]:
        """Nonce (fetched ahead for this X-KeyID, or now), then the sealed Order request, both under
        `signer`'s X-KeyID; the raw reply. The next call's nonce (`nonces[1]`) is started in between."""
        _, hash_id_, key_id = signer
        ahead, then = nonces
        nonce = (ahead.take(state, key_id) if ahead is not None else None) or self._nonce(state, key_id)
        if then is not None:
            then.start(self._nonce, key_id, self._call_timeout)
        body = envelope.seal_request(state.service, message, shop_no=self._shop_no, nonce=nonce,
                                     hash_id=hash_id_.reveal())
        return self._transport.post(state, "Order", body, key_id)

    def _emit(self, record: BankCallRecord) -> None:
        if self._observer is None:
            return
        try:
            self._observer(record)
        except Exception:  # the observer is bookkeeping; it must never break a bank call
            log.warning("bank call observer failed for %s", record.api_service, exc_info=True)

    def _nonce(self, state: CallState, key_id: Secret) -> str:
        service = state.service
        reply = self._transport.post(state, "Nonce", {"ShopNo": self._shop_no}, key_id)
        nonce = reply.get("Nonce")
        if nonce is None and ("Status" in reply or "Description" in reply):
            description = CONTROL_CHARS.sub(" ", str(reply.get("Description")))[:80]
            raise EnvelopeRefused(f"{service}: Nonce refused with an unsigned error "
                                  f"(Description={description})", service=service)
        if not isinstance(nonce, str) or not nonce or not nonce.isascii() or not nonce.isprintable():
            raise MalformedReply(f"{service}: Nonce reply lacks a usable Nonce", service=service)
        return nonce


def _parsed(service: str, parse: Callable[[dict[str, Any]], T], inner: dict[str, Any]) -> T:
    """The typed reply; a parser's surprise (RecursionError, TypeError...) is a bad reply."""
    try:
        return parse(inner)
    except QPayError:
        raise
    except Exception as exc:
        raise MalformedReply(
            f"{service}: reply content does not parse ({type(exc).__name__})", service=service
        ) from None


def _outcome_of(exc: QPayError) -> Outcome:
    if isinstance(exc, BankTransportError):
        return "transport_error"
    if isinstance(exc, BankRejection):
        return "rejected"
    if isinstance(exc, BankProtocolError):
        return "protocol_error"
    return "protocol_error"
