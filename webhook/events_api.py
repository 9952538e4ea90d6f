"""The pull feed: `GET /api/events?after=<cursor>&limit=<1..500>` for a shop that cannot take pushes.

Bearer API_TOKEN like the orders API. Each event is its stored body, byte for byte what the pushes
carry; `next` is the cursor to ask with next time (core/services/events.py says why following it
never skips or repeats an event).
"""

from __future__ import annotations

import json

from flask import Blueprint, Response, request

from core.services.events import DEFAULT_FEED_LIMIT, MAX_FEED_LIMIT, Cursor, feed_page
from webhook.deps import deps
from webhook.orders_api import authenticate
from webhook.validation import InvalidInput

bp = Blueprint("events_api", __name__, url_prefix="/api")
bp.before_request(authenticate)


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_FEED_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_FEED_LIMIT:
        raise InvalidInput(f"limit must be a whole number from 1 to {MAX_FEED_LIMIT}", field="limit")
    return int(raw)


@bp.get("/events")
def feed() -> Response:
    limit = _limit(request.args.get("limit"))
    try:
        after = Cursor.parse(request.args.get("after"))
    except ValueError as exc:
        raise InvalidInput(str(exc), field="after") from None
    with deps().unit_of_work() as session:
        rows, cursor = feed_page(session, after, limit)
        bodies = [row.body for row in rows]
    text = '{"events":[' + ",".join(bodies) + '],"next":' + json.dumps(str(cursor)) + "}"
    return Response(text, status=200, mimetype="application/json")
