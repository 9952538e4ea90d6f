"""The recording functions: bounded labels, the fixed sets created at zero, the bank record mapping."""

from __future__ import annotations

from prometheus_client import REGISTRY

from core.sinopac.types import BankCallRecord
from metrics import defs


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_an_unknown_label_value_is_recorded_as_other_never_as_itself():
    before = value("qpay_callbacks_total", source="other", result="other")
    defs.callback("ORDER-12345", "PayToken-abc")
    assert value("qpay_callbacks_total", source="other", result="other") == before + 1
    assert REGISTRY.get_sample_value("qpay_callbacks_total", {"source": "ORDER-12345",
                                                              "result": "PayToken-abc"}) is None


def test_a_bank_record_counts_its_service_and_outcome_and_observes_seconds():
    labels = {"service": "OrderPayQuery"}
    failed = {"service": "OrderPayQuery", "outcome": "transport_error", "shop": "none", "key_set": "none"}
    before = (value("qpay_bank_requests_total", **failed),
              value("qpay_bank_request_duration_seconds_sum", **labels))
    defs.bank_call(BankCallRecord("OrderPayQuery", "abcdefgh…", None, 1500, None, "transport_error"))
    after = value("qpay_bank_requests_total", **failed)
    assert after == before[0] + 1
    assert value("qpay_bank_request_duration_seconds_sum", **labels) == before[1] + 1.5


def test_a_bank_record_carries_its_shop_and_key_set_and_nothing_unbounded():
    labels = {"service": "OrderQuery", "outcome": "ok", "shop": "NA0001_002", "key_set": "next"}
    before = value("qpay_bank_requests_total", **labels)
    defs.bank_call(BankCallRecord("OrderQuery", "A1", None, 5, 200, "ok", shop_no="NA0001_002",
                                  key_set="next"))
    assert value("qpay_bank_requests_total", **labels) == before + 1
    odd = BankCallRecord("OrderQuery", "A1", None, 5, 200, "ok", shop_no="x" * 40, key_set="weird")
    unknown = {"service": "OrderQuery", "outcome": "ok", "shop": "none", "key_set": "none"}
    before = value("qpay_bank_requests_total", **unknown)
    defs.bank_call(odd)
    assert value("qpay_bank_requests_total", **unknown) == before + 1


def test_a_sweep_run_counts_its_result_and_each_step():
    before = (value("qpay_sweep_runs_total", result="ok"), value("qpay_sweep_settled_total", step="bulk"),
              value("qpay_sweep_settled_total", step="requeued"))
    defs.sweep_run("ok", {"bulk": 3, "requeued": 0})
    assert value("qpay_sweep_runs_total", result="ok") == before[0] + 1
    assert value("qpay_sweep_settled_total", step="bulk") == before[1] + 3
    assert value("qpay_sweep_settled_total", step="requeued") == before[2]


def test_settlement_resolve_retries_and_deliveries_are_recorded():
    before = (value("qpay_settlement_seconds_count"), value("qpay_settlement_seconds_bucket", le="1.0"),
              value("qpay_resolve_retries_total"), value("qpay_event_deliveries_total", result="failed"))
    defs.settled(0.4)
    defs.resolve_retry()
    defs.event_delivery("failed")
    assert value("qpay_settlement_seconds_count") == before[0] + 1
    assert value("qpay_settlement_seconds_bucket", le="1.0") == before[1] + 1
    assert value("qpay_resolve_retries_total") == before[2] + 1
    assert value("qpay_event_deliveries_total", result="failed") == before[3] + 1


def test_preset_creates_every_fixed_series_at_zero_or_more():
    defs.preset(["NA0001_001"])
    labels = {"service": "OrderCreate", "outcome": "ok", "shop": "NA0001_001", "key_set": "active"}
    assert REGISTRY.get_sample_value("qpay_bank_requests_total", labels) is not None
    for source in ("backend", "return"):
        for result in ("stored", "duplicate", "invalid", "db_unavailable"):
            assert REGISTRY.get_sample_value("qpay_callbacks_total", {"source": source, "result": result}) \
                is not None
    assert REGISTRY.get_sample_value("qpay_event_deliveries_total", {"result": "gave_up"}) is not None
