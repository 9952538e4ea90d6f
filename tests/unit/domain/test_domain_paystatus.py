"""The one PayStatus table: documented codes apart from ours, and the sandbox speaking only its codes."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.sinopac import paystatus
from sandbox.bank import pay_status
from sandbox.records import Order

PROJECT = Path(__file__).resolve().parents[3]
NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)


def test_only_the_three_codes_the_bank_documents_are_marked_documented() -> None:
    # PROTOCOL.md §9.4: 1A200, 1A400 and 1C400 are the only codes seen in real replies
    assert {"1A200", "1A400", "1C400"} == paystatus.DOCUMENTED
    assert paystatus.DOCUMENTED.isdisjoint(paystatus.OURS)
    assert {"1A600", "1C200", "1C500", "1C600"} == paystatus.OURS


def _order(pay_type: str, state: str = "unpaid") -> Order:
    return Order(shop_no="NA0001_001", order_no="S1", amount=10000, pay_type=pay_type, prdt_name="tea",
                 return_url="", backend_url="", created_at=NOW, expire_date="20261127", exp_minutes=10,
                 state=state)


@pytest.mark.parametrize(
    ("pay_type", "state", "at", "code"),
    [
        ("A", "unpaid", NOW, paystatus.ATM_UNPAID),
        ("A", "paid", NOW, paystatus.ATM_PAID),
        ("A", "unpaid", NOW + timedelta(days=3), paystatus.ATM_OVERDUE),
        ("C", "unpaid", NOW, paystatus.CARD_UNPAID),
        ("C", "paid", NOW, paystatus.CARD_CAPTURED),
        ("C", "declined", NOW, paystatus.CARD_DECLINED),
        ("C", "unpaid", NOW + timedelta(minutes=10), paystatus.CARD_EXPIRED),
    ],
)
def test_the_sandbox_reports_codes_from_cores_table(
    pay_type: str, state: str, at: datetime, code: str
) -> None:
    assert pay_status(_order(pay_type, state), at) == code
    assert code in paystatus.DOCUMENTED | paystatus.OURS


def test_the_sandbox_keeps_no_pay_status_literals_of_its_own() -> None:
    # given the sandbox's sources, when we look for PayStatus-shaped string literals, then there are none
    literals = {
        node.value
        for path in (PROJECT / "sandbox").glob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        and len(node.value) == 5 and node.value[:1] == "1" and node.value[1:2] in ("A", "C")
        and node.value[2:].isdigit()
    }
    assert literals == set()


def test_core_never_imports_the_sandbox() -> None:
    imports = {
        name
        for path in (PROJECT / "core").rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        for name in (
            [a.name for a in node.names] if isinstance(node, ast.Import)
            else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        )
    }
    assert not {name for name in imports if name == "sandbox" or name.startswith("sandbox.")}
