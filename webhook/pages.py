"""Rendering the customer's HTML pages (templates/): the checkout page, the return page, messages.

Jinja escapes everything interpolated. The one script is inline with a per-response nonce, so the CSP
forbids every other script; it fetches only our own page again (connect-src 'self') and swaps in the
server-rendered part. Words come from webhook/texts.py.
"""

from __future__ import annotations

import secrets
from typing import Any

from flask import Response, render_template

from webhook.texts import TEXTS, Lang


def content_security_policy(nonce: str | None = None) -> str:
    """The one policy of every page: nothing but its own inline style, its nonce'd script (if any) and
    fetches to us; never framed (clickjacking), no <base> rewriting, forms post only to us."""
    script = f"'nonce-{nonce}'" if nonce else "'none'"
    return (f"default-src 'none'; script-src {script}; connect-src 'self'; style-src 'unsafe-inline'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def _html(body: str, status: int, nonce: str | None = None) -> Response:
    response = Response(body, status=status, mimetype="text/html")
    response.headers["Content-Security-Policy"] = content_security_policy(nonce)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # nosniff: webhook/headers.py, on every answer
    return response


def customer_page(template: str, status: int, lang: Lang, *, live: bool = False, **context: Any) -> Response:
    """A page in `lang`; `live` pages carry the polling script (and so a nonce in the CSP)."""
    nonce = secrets.token_urlsafe(16) if live else None
    context.setdefault("final", True)
    context.setdefault("back_url", None)
    context.setdefault("back_delay", 0)
    context.setdefault("state_key", "")
    body = render_template(template, lang=lang, t=TEXTS[lang], zh=TEXTS["zh-TW"], nonce=nonce, **context)
    return _html(body, status, nonce)


def problem_page(status: int, lang: Lang, title_key: str, message: str) -> Response:
    """A static page saying what went wrong (`message` may be a technical detail: it is escaped)."""
    return customer_page("message.html", status, lang, title=TEXTS[lang][title_key], message=message)
