"""Headers every answer carries, whatever produced it (views, error handlers, the orders API).

`X-Content-Type-Options: nosniff` stops a browser from guessing an HTML or script type into a JSON
answer that echoes input. The HTML pages add their own policy (webhook/pages.py).
"""

from __future__ import annotations

from flask import Flask, Response

NOSNIFF = ("X-Content-Type-Options", "nosniff")


def register_security_headers(app: Flask) -> None:
    @app.after_request
    def _nosniff(response: Response) -> Response:
        response.headers[NOSNIFF[0]] = NOSNIFF[1]
        return response
