"""Every counter and histogram the processes update, and one function per fact to record.

Labels take only values from small fixed sets (sources, results, bank services, outcomes, steps, the
configured ShopNos, key sets): never an order number, a PayToken or an error text. A value outside its
set is recorded as `other` (`none` for a shop or key set), so a bug cannot grow a label without bound.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from core.sinopac.fields import SHOP_NO_RE
from core.sinopac.types import BankCallRecord

CALLBACK_SOURCES = frozenset({"backend", "return"})
CALLBACK_RESULTS = frozenset({"stored", "duplicate", "invalid", "db_unavailable"})
BANK_SERVICES = frozenset({"OrderCreate", "OrderQuery", "OrderPayQuery"})
BANK_OUTCOMES = frozenset({"ok", "rejected", "transport_error", "protocol_error"})
KEY_SETS = frozenset({"active", "next"})
SWEEP_RESULTS = frozenset({"ok", "errors", "failed", "skipped"})
SWEEP_STEPS = frozenset({"requeued", "bulk", "targeted", "expired"})
DELIVERY_RESULTS = frozenset({"delivered", "failed", "gave_up"})

# Seconds. Bank calls: the sandbox answers in milliseconds, the real bank in tenths, a timeout at 30 s.
BANK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Seconds from a PayToken's first receipt to its order's final state: under a second when all is
# well, minutes while retries back off, up to hours when the sweep had to find it.
SETTLEMENT_BUCKETS = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0)

CALLBACKS = Counter(
    "qpay_callbacks_total", "PayToken callbacks received, by source and what became of them",
    ["source", "result"],
)
BANK_REQUESTS = Counter(
    "qpay_bank_requests_total",
    "Calls to the bank's QPay API, by service, outcome, shop and the key set that verified the reply",
    ["service", "outcome", "shop", "key_set"],
)
BANK_DURATION = Histogram(
    "qpay_bank_request_duration_seconds", "Duration of calls to the bank's QPay API", ["service"],
    buckets=BANK_BUCKETS,
)
SETTLEMENT = Histogram(
    "qpay_settlement_seconds", "From a PayToken's first receipt to its order's final state",
    buckets=SETTLEMENT_BUCKETS,
)
RESOLVE_RETRIES = Counter("qpay_resolve_retries_total", "Resolve tasks retried after a transient failure")
SWEEP_RUNS = Counter("qpay_sweep_runs_total", "Sweep passes, by result (ok, errors, failed, skipped)",
                     ["result"])
SWEEP_SETTLED = Counter(
    "qpay_sweep_settled_total", "Work done by sweep passes, by step (requeued, bulk, targeted, expired)",
    ["step"],
)
EVENT_DELIVERIES = Counter(
    "qpay_event_deliveries_total", "Deliveries of events to the shop's endpoint, by result", ["result"],
)

BEAT_LOCK_HELD = Gauge(
    "qpay_beat_lock_held", "1 while this beat holds the owner lock and sends the schedule, else 0",
)


def _bounded(value: str, allowed: Iterable[str]) -> str:
    return value if value in allowed else "other"


def callback(source: str, result: str) -> None:
    """One callback on /qpay/backend or /qpay/return and its result."""
    CALLBACKS.labels(_bounded(source, CALLBACK_SOURCES), _bounded(result, CALLBACK_RESULTS)).inc()


def bank_call(record: BankCallRecord) -> None:
    """One bank call, from the client's observer record (the same record the bank_calls row keeps)."""
    service = _bounded(record.api_service, BANK_SERVICES)
    # The client only ever has a configured shop, so the ShopNos are as few as the configuration's.
    shop = record.shop_no if SHOP_NO_RE.fullmatch(record.shop_no or "") else "none"
    key_set = record.key_set if record.key_set in KEY_SETS else "none"
    BANK_REQUESTS.labels(service, _bounded(record.outcome, BANK_OUTCOMES), shop, key_set).inc()
    BANK_DURATION.labels(service).observe(max(0.0, record.duration_ms / 1000.0))


def settled(seconds: float) -> None:
    """An order reached its final state this long after its PayToken first arrived."""
    SETTLEMENT.observe(max(0.0, seconds))


def resolve_retry() -> None:
    RESOLVE_RETRIES.inc()


def sweep_run(result: str, by_step: dict[str, int] | None = None) -> None:
    """One sweep pass: its result and how much each step did."""
    SWEEP_RUNS.labels(_bounded(result, SWEEP_RESULTS)).inc()
    for step, count in (by_step or {}).items():
        if count > 0:
            SWEEP_SETTLED.labels(_bounded(step, SWEEP_STEPS)).inc(count)


def event_delivery(result: str) -> None:
    """One attempt to deliver an event to the shop: delivered, failed (will retry) or gave_up."""
    EVENT_DELIVERIES.labels(_bounded(result, DELIVERY_RESULTS)).inc()


def beat_lock(held: bool) -> None:
    """Whether this beat process owns the schedule now (summed over beats it must be exactly 1)."""
    BEAT_LOCK_HELD.set(1 if held else 0)


def preset(shops: Iterable[str] = ()) -> None:
    """Create every fixed label combination at zero, so rates and alerts see a series from the start
    (a counter that first appears at 1 has no increase Prometheus can see); bank calls per shop of
    `shops` under its active key set."""
    for source in CALLBACK_SOURCES:
        for result in CALLBACK_RESULTS:
            CALLBACKS.labels(source, result)
    for service in BANK_SERVICES:
        BANK_DURATION.labels(service)
        for outcome in BANK_OUTCOMES:
            for shop in shops:
                BANK_REQUESTS.labels(service, outcome, shop, "active")
    for result in SWEEP_RESULTS:
        SWEEP_RUNS.labels(result)
    for step in SWEEP_STEPS:
        SWEEP_SETTLED.labels(step)
    for result in DELIVERY_RESULTS:
        EVENT_DELIVERIES.labels(result)
