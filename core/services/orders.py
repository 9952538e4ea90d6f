"""Creating orders at the bank and reading them back.

Read (is the OrderNo free?), end the transaction, call the bank, then store the order in a new
transaction: no transaction is open during OrderCreate (on SQLite it would hold the write lock every
callback needs). The bank call comes first, so a refused or failed OrderCreate leaves nothing
behind. If the second transaction then fails, the bank holds an order we do not: a payment for it
arrives as an unknown OrderNo, which is rejected and logged loudly, never silently paid.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Order, OrderEvent
from core.services.due import next_check_at
from core.services.events import record_event
from core.services.units import UnitOfWork, as_unit_of_work
from core.settings import Settings
from core.sinopac.errors import MalformedReply
from core.sinopac.fields import ORDER_NO_RE, is_valid_product_name
from core.sinopac.messages import OrderCreateRequest
from core.sinopac.timefmt import BANK_TZ
from core.states import OrderStatus, Source

if TYPE_CHECKING:
    from core.sinopac.client import BankClient
    from core.sinopac.types import OrderCreateResult

log = logging.getLogger(__name__)

CARD_EXP_MINUTES = 30  # default card link validity: the longest the bank allows (PROTOCOL.md §9.1)
MIN_CARD_EXP_MINUTES = 1  # CardParam.ExpMinutes is 1-30 (PROTOCOL.md §9.1)
MAX_CARD_EXP_MINUTES = 30
DEFAULT_EXPIRE_DAYS = 3
MAX_EXPIRE_DAYS = 60
MAX_AMOUNT_TWD = 9_999_999  # ×100 must fit the bank's 9 digits


class OrderValidationError(ValueError):
    """Bad input for a new order; `field` names the offending field for the API's error body."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class NewOrder:
    amount_twd: int  # whole New Taiwan dollars; stored and sent ×100
    pay_type: str  # "A" ATM virtual account, "C" credit card
    product_name: str
    order_no: str | None = None  # generated when absent
    expire_days: int | None = None  # ATM only: days from today (Taipei) to the last payment day
    expire_minutes: int | None = None  # card only: link validity (ExpMinutes), default CARD_EXP_MINUTES
    shop_no: str | None = None  # the shop selling; None: the only (or first) configured shop


def _validate(new: NewOrder) -> None:
    amount = new.amount_twd
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise OrderValidationError("amount_twd", "must be a whole number of New Taiwan dollars")
    if not 1 <= amount <= MAX_AMOUNT_TWD:
        raise OrderValidationError("amount_twd", f"must be between 1 and {MAX_AMOUNT_TWD}")
    if new.pay_type not in ("A", "C"):
        raise OrderValidationError("pay_type", "must be 'A' (ATM) or 'C' (card)")
    name = new.product_name
    if not isinstance(name, str) or not name.strip():
        raise OrderValidationError("product_name", "is required")
    if not is_valid_product_name(name):
        raise OrderValidationError(
            "product_name", "at most 60 characters, without quotes, % or control characters"
        )
    order_no = new.order_no
    if order_no is not None and (not isinstance(order_no, str) or not ORDER_NO_RE.fullmatch(order_no)):
        raise OrderValidationError("order_no", "1-50 letters, digits, _ or -")
    if new.pay_type == "C" and new.expire_days is not None:
        raise OrderValidationError("expire_days", "applies only to ATM orders (pay_type A)")
    days = new.expire_days
    bad_days = isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= MAX_EXPIRE_DAYS
    if days is not None and bad_days:
        raise OrderValidationError("expire_days", f"must be a whole number from 0 to {MAX_EXPIRE_DAYS}")
    if new.pay_type == "A" and new.expire_minutes is not None:
        raise OrderValidationError("expire_minutes", "applies only to card orders (pay_type C)")
    minutes = new.expire_minutes
    lo, hi = MIN_CARD_EXP_MINUTES, MAX_CARD_EXP_MINUTES
    bad_minutes = isinstance(minutes, bool) or not isinstance(minutes, int) or not lo <= minutes <= hi
    if minutes is not None and bad_minutes:
        raise OrderValidationError("expire_minutes", f"must be a whole number from {lo} to {hi}")


def generate_order_no(now: datetime) -> str:
    """Sortable and unguessable: Q + Taipei time to the second + 8 random hex digits."""
    return "Q" + now.astimezone(BANK_TZ).strftime("%Y%m%d%H%M%S") + secrets.token_hex(4).upper()


def atm_expiry(now: datetime, days: int) -> tuple[datetime, datetime]:
    """(ExpireDate as a Taipei date at midnight, the instant it ends in UTC): payable all that day."""
    last_day = now.astimezone(BANK_TZ).date() + timedelta(days=days)
    ends = datetime.combine(last_day + timedelta(days=1), time(0), tzinfo=BANK_TZ).astimezone(UTC)
    return datetime.combine(last_day, time(0), tzinfo=BANK_TZ), ends


def create_order(
    source: Session | UnitOfWork,
    client: BankClient,
    settings: Settings,
    new: NewOrder,
    *,
    now: datetime | None = None,
) -> Order:
    """OrderCreate at the bank, then the order stored pending with TSNo, payment details and expiry.

    `source`: a unit of work (one transaction to check, none during the bank call, one to store) or
    a Session (all in the caller's transaction: tests). Raises OrderValidationError for bad input
    (before any bank call), the bank client's errors (BankTransportError, BankRejection,
    BankProtocolError) unchanged, and IntegrityError if the OrderNo was taken meanwhile.
    """
    _validate(new)
    shop_no = shop_of(settings, new.shop_no)
    units = as_unit_of_work(source)
    at = now if now is not None else datetime.now(UTC)
    order_no = new.order_no or generate_order_no(at)
    with units() as session:
        taken = session.scalar(select(Order.id).where(Order.key(order_no, shop_no))) is not None
    if taken:
        raise OrderValidationError("order_no", "already exists")
    if getattr(client, "shop_no", shop_no) != shop_no:
        raise ValueError(f"the bank client given is not shop {shop_no}'s")
    request, expires_at = _bank_request(settings, new, order_no, at)
    result = client.create_order(request)
    _check_reply(request, result)
    check_at = next_check_at(0, at, settings.check_schedule)
    order = _pending_order(shop_no, request, result, expires_at, check_at, at)
    _store(units, order, at)
    log.info("order %s created", order_no,
             extra={"order_no": order_no, "shop_no": shop_no, "ts_no": result.ts_no})
    return order


def _bank_request(
    settings: Settings, new: NewOrder, order_no: str, at: datetime
) -> tuple[OrderCreateRequest, datetime]:
    """The OrderCreate request for a valid new order, and the instant the order expires."""
    expire_date = None
    card_minutes = CARD_EXP_MINUTES if new.expire_minutes is None else new.expire_minutes
    if new.pay_type == "A":
        days = DEFAULT_EXPIRE_DAYS if new.expire_days is None else new.expire_days
        last_day, expires_at = atm_expiry(at, days)
        expire_date = last_day.date()
    else:
        expires_at = at + timedelta(minutes=card_minutes)
    base = settings.public_base_url.rstrip("/")
    request = OrderCreateRequest(
        order_no=order_no,
        amount=new.amount_twd * 100,
        pay_type=new.pay_type,
        product_name=new.product_name,
        return_url=f"{base}/qpay/return",
        backend_url=f"{base}/qpay/backend",
        expire_date=expire_date,
        card_exp_minutes=card_minutes,
    )
    return request, expires_at


def _check_reply(request: OrderCreateRequest, result: OrderCreateResult) -> None:
    """A signed reply that does not describe the order we asked for is stored as nothing."""
    if result.order_no != request.order_no or result.amount != request.amount or not result.ts_no:
        raise MalformedReply("OrderCreate: reply does not echo our OrderNo and Amount, or has no TSNo",
                             service="OrderCreate")
    if request.pay_type == "A" and not result.atm_pay_no:
        raise MalformedReply("OrderCreate: ATM reply without AtmPayNo", service="OrderCreate")
    if request.pay_type == "C" and not result.card_pay_url:
        raise MalformedReply("OrderCreate: card reply without CardPayURL", service="OrderCreate")


def _pending_order(
    shop_no: str,
    request: OrderCreateRequest,
    result: OrderCreateResult,
    expires_at: datetime,
    check_at: datetime,
    at: datetime,
) -> Order:
    """The order as the bank created it: pending, with its TSNo and payment details."""
    return Order(
        shop_no=shop_no,
        order_no=request.order_no,
        amount=request.amount,
        currency="TWD",
        pay_type=request.pay_type,
        product_name=request.product_name,
        status=OrderStatus.PENDING.value,
        ts_no=result.ts_no,
        atm_pay_no=result.atm_pay_no,
        card_pay_url=result.card_pay_url,
        expires_at=expires_at,
        next_check_at=check_at,
        check_attempts=0,
        created_at=at,
        updated_at=at,
    )


def _store(units: UnitOfWork, order: Order, at: datetime) -> None:
    """The new order and its first event, in one transaction of their own."""
    shop_no, order_no, amount, ts_no = order.shop_no, order.order_no, order.amount, order.ts_no
    with units() as session:
        session.add(order)
        session.add(
            OrderEvent(
                shop_no=shop_no,
                order_no=order_no,
                from_status=None,
                to_status=OrderStatus.PENDING.value,
                source=Source.API.value,
                ts_no=ts_no,
                amount=amount,
                detail="created",
                at=at,
            )
        )
        session.flush()
        record_event(session, order, None, OrderStatus.PENDING.value, Source.API.value, at)


def shop_of(settings: Settings, shop_no: str | None) -> str:
    """The ShopNo a new order belongs to: required when several shops are configured, and known."""
    if shop_no is None:
        if len(settings.all_shops) > 1:
            raise OrderValidationError("shop_no", "is required: this deployment serves several shops")
        return settings.shop_no
    if not isinstance(shop_no, str) or shop_no not in settings.shop_numbers:
        raise OrderValidationError("shop_no", "is not a shop of this deployment")
    return shop_no


def get_order(session: Session, order_no: str, shop_no: str | None = None) -> Order | None:
    """The order with this OrderNo (of `shop_no`; None: of any shop, the oldest first)."""
    return session.scalars(
        select(Order).where(Order.key(order_no, shop_no)).order_by(Order.id)
        .execution_options(populate_existing=True)
    ).first()


def order_history(session: Session, order_no: str, shop_no: str | None = None) -> list[OrderEvent]:
    """The order's events, oldest first: the answer to "what happened to order X?"."""
    stmt = select(OrderEvent).where(OrderEvent.order_no == order_no)
    if shop_no is not None:
        stmt = stmt.where(OrderEvent.shop_no == shop_no)
    return list(session.scalars(stmt.order_by(OrderEvent.id)))
