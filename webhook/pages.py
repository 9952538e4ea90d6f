"""The small HTML pages a customer's browser sees after paying (ReturnURL).

Everything interpolated is escaped; the script only reads a status word from the public status
endpoint and writes it with textContent. A per-response nonce lets the CSP forbid any other script.
"""

from __future__ import annotations

import secrets

from flask import Response, render_template_string

_LAYOUT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>body{font-family:sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;line-height:1.5}
#status{font-weight:bold}</style></head>
<body>{% block body %}{% endblock %}</body></html>"""

_FOLLOW = """{% extends layout %}{% block body %}
<h1>Thank you</h1>
<p>We received your payment notice and are confirming it with the bank.</p>
<p>Payment status: <span id="status" data-url="{{ status_url }}">checking…</span></p>
<p id="note"></p>
<script nonce="{{ nonce }}">
(function () {
  var el = document.getElementById("status"), note = document.getElementById("note");
  var words = {pending: "waiting for the bank", paid: "paid", failed: "failed", expired: "expired",
               rejected: "not accepted", needs_review: "under review by the shop", unknown: "not found yet"};
  var done = {paid: 1, failed: 1, expired: 1, rejected: 1};
  var delay = 2000, tries = 0;
  function poll() {
    fetch(el.dataset.url, {headers: {"Accept": "application/json"}, cache: "no-store"})
      .then(function (r) { return r.json(); })
      .then(function (body) {
        var word = String(body.status || "unknown");
        el.textContent = words[word] || word;
        if (done[word]) { note.textContent = "You can close this page."; return; }
        schedule();
      })
      .catch(schedule);
  }
  function schedule() {
    tries += 1; delay = Math.min(delay * 1.3, 15000);
    if (tries < 200) setTimeout(poll, delay);
  }
  poll();
})();
</script>
{% endblock %}"""

_PROBLEM = """{% extends layout %}{% block body %}
<h1>{{ title }}</h1>
<p>{{ message }}</p>
{% endblock %}"""


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


def follow_page(status_url: str) -> Response:
    nonce = secrets.token_urlsafe(16)
    body = render_template_string(
        _FOLLOW, layout=_layout(), title="Payment received", status_url=status_url, nonce=nonce
    )
    return _html(body, 200, nonce)


def problem_page(status: int, title: str, message: str) -> Response:
    body = render_template_string(_PROBLEM, layout=_layout(), title=title, message=message)
    return _html(body, status)


def _layout() -> object:
    from flask import current_app

    return current_app.jinja_env.from_string(_LAYOUT)
