"""The bank client's exception tree: the type alone says whether a retry can help.

    QPayError
    ├── BankTransportError        retryable: the request may not have been processed
    │   ├── BankTimeout           connect or read timeout
    │   ├── BankConnectionError   refused, reset, DNS
    │   ├── BankHTTPError         any HTTP status other than 200 (5xx, 429, a 403 from a proxy...)
    │   └── NotAnEnvelope         HTTP 200 whose body is no QPay answer at all: an HTML maintenance
    │                             page, empty, cut short, not JSON, over 1 MiB, no envelope field
    ├── BankProtocolError         NOT retryable, security-relevant: a QPay envelope that cannot be trusted
    │   ├── MalformedReply        envelope fields missing or unusable, unsigned envelope-level error,
    │   │                         a verified message whose content does not parse
    │   │   └── EnvelopeRefused   an unsigned envelope-level Status F (bad Sign, wrong X-KeyID, ...)
    │   ├── UndecryptableReply    Message does not decrypt with our HashID and the reply's nonce
    │   └── SignatureMismatch     the reply's Sign does not verify
    └── BankRejection             NOT retryable: the bank processed the call and answered Status F

Messages never contain hash keys, the HashID, the X-KeyID or a full PayToken.
"""

from __future__ import annotations


class QPayError(Exception):
    """Base of every error the bank client raises."""

    retryable: bool = False

    def __init__(self, message: str, *, service: str = "") -> None:
        super().__init__(message)
        self.service = service


class BankTransportError(QPayError):
    retryable = True


class BankTimeout(BankTransportError):
    pass


class BankConnectionError(BankTransportError):
    pass


class BankHTTPError(BankTransportError):
    def __init__(self, message: str, *, service: str = "", status: int = 0) -> None:
        super().__init__(message, service=service)
        self.status = status


class NotAnEnvelope(BankTransportError):
    """The answer is not a QPay envelope at all: a maintenance page or a broken connection, not a
    forgery. Retried like an outage; only a well-formed envelope that fails its checks is untrusted."""


class BankProtocolError(QPayError):
    retryable = False


class MalformedReply(BankProtocolError):
    pass


class EnvelopeRefused(MalformedReply):
    """The bank refused the request's envelope with an unsigned error (PROTOCOL.md §7, UNVERIFIED
    shape): nothing was processed, so the client may send it again signed with its other key set."""


class UndecryptableReply(BankProtocolError):
    pass


class SignatureMismatch(BankProtocolError):
    pass


class BankRejection(QPayError):
    """Inner Status F; `code` is the leading code of Description, e.g. E0602."""

    retryable = False

    def __init__(self, message: str, *, service: str = "", code: str = "", description: str = "") -> None:
        super().__init__(message, service=service)
        self.code = code
        self.description = description
