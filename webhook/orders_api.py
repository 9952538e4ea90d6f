"""The orders API for the shop's backend: create an order at the bank, read one back with its history.

Protected by a bearer token (API_TOKEN, compared in constant time). Without API_TOKEN the API is
closed (503), never open.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, jsonify, request
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from core.logging import bind_context
from core.models import OrderEvent
from core.services.bank_calls import recorder
from core.services.order_json import iso, order_detail, order_summary, twd
from core.services.orders import (
    OrderValidationError,
    create_order,
    get_order,
    order_history,
    shop_of,
)
from core.sinopac.errors import BankProtocolError, BankRejection, BankTransportError, QPayError
from core.sinopac.fields import ORDER_NO_RE, SHOP_NO_RE
from core.sinopac.types import BankCallRecord
from webhook.auth import bearer_refusal
from webhook.bodies import read_capped
from webhook.deps import deps
from webhook.errors import error_response
from webhook.validation import (
    MAX_API_BODY,
    InvalidInput,
    decode_json_object,
    validate_order_request,
)

log = logging.getLogger(__name__)
bp = Blueprint("orders_api", __name__, url_prefix="/api")

# The service names the amount `amount_twd`; the API calls it `amount`.
_FIELD_NAMES = {"amount_twd": "amount"}


@bp.before_request
def authenticate() -> Response | None:
    """Bearer API_TOKEN, compared in constant time (the events feed uses it too)."""
    token = deps().settings.api_token
    if token is None:
        return error_response(503, "API_TOKEN is not configured")
    return bearer_refusal(token)


def event_body(event: OrderEvent) -> dict[str, Any]:
    return {
        "from_status": event.from_status,
        "to_status": event.to_status,
        "source": event.source,
        "ts_no": event.ts_no,
        "amount": twd(event.amount) if event.amount is not None else None,
        "detail": event.detail,
        "at": iso(event.at),
    }


def bank_error_response(exc: QPayError) -> Response:
    if isinstance(exc, BankRejection):
        return error_response(502, "the bank refused the order", code=exc.code or None,
                              description=exc.description or None)
    if isinstance(exc, BankTransportError):
        return error_response(503, "the bank is unreachable; try again later")
    if isinstance(exc, BankProtocolError):
        return error_response(502, "the bank's reply could not be trusted (protocol error)")
    return error_response(502, "bank error")


def _record_calls(calls: list[BankCallRecord]) -> None:
    """The request's bank calls, in a transaction of their own (after the bank answered)."""
    if not calls:
        return
    try:
        with deps().unit_of_work() as session:
            record = recorder(session)
            for call in calls:
                record(call)
    except SQLAlchemyError as exc:  # bookkeeping: never turns a created order into an error
        log.warning("could not record %d bank call(s): %s", len(calls), type(exc).__name__)


@bp.post("/orders")
def create() -> Response:
    data = decode_json_object(read_capped(MAX_API_BODY))
    new = validate_order_request(data)
    d = deps()
    failure: QPayError | None = None
    body: dict[str, Any] = {}
    calls: list[BankCallRecord] = []
    try:
        shop_no = shop_of(d.settings, new.shop_no)
        bind_context(shop_no=shop_no)
        # No transaction is open during the bank call (create_order opens its own short ones).
        client = d.client_factory(calls.append, shop_no=shop_no)
        order = create_order(d.unit_of_work, client, d.settings, new)
    except QPayError as exc:
        failure = exc  # the BankCall row, written below, says what the bank did
    except OrderValidationError as exc:
        field = _FIELD_NAMES.get(exc.field, exc.field)
        raise InvalidInput(f"{field}: {exc.message}", field=field) from None
    except IntegrityError:
        return error_response(409, "order_no already exists", field="order_no")
    except ValueError as exc:  # the client's own pre-send checks
        raise InvalidInput(str(exc)) from None
    else:
        bind_context(order_no=order.order_no)
        body = order_summary(order, d.settings)
    finally:
        _record_calls(calls)
    if failure is not None:
        log.warning("order creation failed at the bank", extra={"error": type(failure).__name__,
                                                                "code": getattr(failure, "code", None)})
        return bank_error_response(failure)
    response = jsonify(body)
    response.status_code = 201
    return response


@bp.get("/orders/<order_no>")
def show(order_no: str) -> Response:
    if not ORDER_NO_RE.fullmatch(order_no):
        raise InvalidInput("order_no must be 1-50 characters of A-Z a-z 0-9 _ -", field="order_no")
    shop_no = request.args.get("shop_no") or None
    if shop_no is not None and not SHOP_NO_RE.fullmatch(shop_no):
        raise InvalidInput("shop_no must be 1-20 characters of A-Z a-z 0-9 _", field="shop_no")
    if shop_no is None and len(deps().settings.all_shops) > 1:
        raise InvalidInput("shop_no is required (?shop_no=...): this deployment serves several shops",
                           field="shop_no")
    bind_context(order_no=order_no)
    with deps().unit_of_work() as session:
        order = get_order(session, order_no, shop_no)
        if order is None:
            return error_response(404, "order not found")
        body = order_detail(order, deps().settings)
        body["events"] = [event_body(e) for e in order_history(session, order_no, order.shop_no)]
    return jsonify(body)
