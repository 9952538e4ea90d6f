"""The bank client's exception tree: the type alone says whether a retry can help.

    QPayError
    ├── BankTransportError        retryable: the request may not have been processed
    │   ├── BankTimeout           connect or read timeout
    │   ├── BankConnectionError   refused, reset, DNS
    │   └── BankHTTPError         HTTP 5xx or 429 (other statuses are protocol errors)
    ├── BankProtocolError         NOT retryable, security-relevant: the reply cannot be trusted
    │   ├── MalformedReply        non-JSON body, missing envelope fields, unexpected HTTP status
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
