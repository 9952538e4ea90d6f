"""The bearer-token check every protected endpoint uses (orders API, /metrics): one rule, one place."""

from __future__ import annotations

import hmac

from flask import Response, request

from core.secrets import Secret
from webhook.errors import error_response


def bearer_refusal(token: Secret) -> Response | None:
    """None when the request carries `Authorization: Bearer <token>` (constant-time compare), else 401."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode("utf-8", "replace"), token.reveal().encode("utf-8")
    ):
        return None
    response = error_response(401, "missing or wrong bearer token")
    response.headers["WWW-Authenticate"] = 'Bearer realm="qpay"'
    return response
