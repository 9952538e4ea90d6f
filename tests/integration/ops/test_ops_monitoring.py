"""The monitoring files: alert rules checked and unit-tested by promtool, Prometheus' scrape config,
the Grafana dashboard and its provisioning, checked by structure (no Prometheus or Grafana runs here).

promtool comes from Debian's `prometheus` package, installed by the test when missing.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.services import PROJECT_DIR
from tests.support.tools import debian_tool

PROMETHEUS = PROJECT_DIR / "deploy" / "prometheus"
GRAFANA = PROJECT_DIR / "deploy" / "grafana"
DOCS = PROJECT_DIR / "docs" / "monitoring.md"
ALERTS = {"QPaySweepNotSucceeding", "QPaySweepNeverSucceeded", "QPayUnresolvedTokenOld",
          "QPayOrderNeedsReview", "QPayBankRequestsFailing", "QPayQueueGrowing",
          "QPayEventDeliveriesFailing", "QPayTargetDown"}


@pytest.fixture(scope="module")
def promtool() -> str:
    return debian_tool("promtool", "prometheus")


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_promtool_checks_the_alert_rules(promtool: str) -> None:
    done = _run([promtool, "check", "rules", "alerts.yml"], PROMETHEUS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in done.stdout


def test_promtool_unit_tests_of_the_alerts_pass(promtool: str) -> None:
    done = _run([promtool, "test", "rules", "alerts_test.yml"], PROMETHEUS)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_checks_the_prometheus_config(promtool: str) -> None:
    # --syntax-only: the rule file path is the container's, checked above on its own
    done = _run([promtool, "check", "config", "--syntax-only", "prometheus.yml"], PROMETHEUS)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_summary_a_runbook_and_a_unit_test() -> None:
    rules = _rules()
    assert {r["alert"] for r in rules} == ALERTS
    tested = set(re.findall(r"alertname: (\w+)", (PROMETHEUS / "alerts_test.yml").read_text()))
    assert tested == ALERTS
    anchors = {f"#{a.lower()}" for a in re.findall(r"^#+ .*?(QPay\w+)", DOCS.read_text(), re.M)}
    for rule in rules:
        notes = rule["annotations"]
        assert notes["summary"], rule["alert"]
        page, _, anchor = notes["runbook"].partition("#")
        assert (PROJECT_DIR / page).is_file(), rule["alert"]
        assert f"#{anchor}" in anchors, f"{rule['alert']}: no heading for #{anchor} in {page}"


def test_prometheus_scrapes_web_worker_and_beat_with_the_rules() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"qpay-web", "qpay-worker", "qpay-beat"} <= set(jobs)
    assert jobs["qpay-web"]["metrics_path"] == "/metrics"
    assert jobs["qpay-web"]["authorization"]["credentials_file"]
    assert any(path.endswith("alerts.yml") for path in config["rule_files"])


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def test_the_grafana_dashboard_shows_the_pipeline() -> None:
    dashboard = json.loads((GRAFANA / "qpay.json").read_text())
    assert dashboard["uid"]
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    panels = [p for p in _panels(dashboard) if p.get("type") != "row"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    exprs = " ".join(t["expr"] for p in panels for t in p.get("targets", []))
    for metric in ("qpay_callbacks_total", "qpay_settlement_seconds_bucket",
                   "qpay_bank_request_duration_seconds_bucket", "qpay_bank_requests_total",
                   "qpay_queue_messages", "qpay_tokens", "qpay_orders", "qpay_sweep_runs_total",
                   "qpay_event_deliveries_total"):
        assert metric in exprs, f"no panel shows {metric}"
    for panel in panels:
        assert panel["gridPos"]["w"] > 0, panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel.get("targets", []):
            assert target["expr"].count("(") == target["expr"].count(")"), panel["title"]


def test_grafana_provisions_the_datasource_and_the_dashboard() -> None:
    sources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert sources["datasources"][0]["type"] == "prometheus"
    boards = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "qpay.yml").read_text())
    assert boards["providers"][0]["options"]["path"]
