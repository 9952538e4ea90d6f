"""The fault suite's shared stack, its ledger of payments, and the summary table printed at the end.

One `Stack` (fresh PostgreSQL database, private Redis, sandbox, web, worker, beat, Flower) serves every
scenario that stops no service; the outage scenarios build their own on private PostgreSQL/Redis.
Every stack uses the same random, non-default shop keys, so the secrets scan (run last) means something.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.support import services
from tests.support.stack import ShopKeys, Stack

LEDGER_KEY = pytest.StashKey[list["Tally"]]()
LAST_MODULE = "test_secrets_scan.py"
BANK_PAID = frozenset({"paid", "needs_review"})  # states that account for money the bank took


@dataclass(frozen=True)
class Tally:
    """One scenario's outcome: the numbers the guarantees are about."""

    scenario: str
    payments: int  # orders the bank took money for
    settled: int  # of those, orders that ended in their expected state (paid, or needs_review)
    lost: int  # paid at the bank, yet here neither paid nor flagged for review
    duplicated: int  # orders changed more than once
    wrong: int  # orders whose final state is not the expected one

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.wrong == 0


def tally(stack: Stack, scenario: str, expected: dict[str, str]) -> Tally:
    """Compare each order's stored state and history with what the bank knows it should be.

    `expected` maps OrderNo -> the state it must end in ("paid" for a payment the bank took,
    "needs_review" for a mismatch, "pending" for an order nobody paid).
    """
    actual = stack.statuses(expected)
    changes = stack.transitions(expected)
    taken = [n for n, s in expected.items() if s in BANK_PAID]
    return Tally(
        scenario=scenario,
        payments=len(taken),
        settled=sum(1 for n in taken if actual.get(n) == expected[n]),
        lost=sum(1 for n in taken if actual.get(n) not in BANK_PAID),
        duplicated=sum(1 for n in expected if changes[n] > 1),
        wrong=sum(1 for n, s in expected.items() if actual.get(n) != s),
    )


Record = Callable[[Stack, str, dict[str, str]], Tally]


@pytest.fixture
def ledger(request: pytest.FixtureRequest) -> Record:
    """Tally a scenario, keep the row for the summary table, and assert the three guarantees."""

    def record(stack: Stack, scenario: str, expected: dict[str, str]) -> Tally:
        row = tally(stack, scenario, expected)
        request.config.stash.setdefault(LEDGER_KEY, []).append(row)
        detail = {n: (stack.status(n), [tuple(e) for e in stack.events(n)]) for n in expected
                  if stack.status(n) != expected[n] or stack.transitions([n])[n] > 1}
        assert row.ok, f"{row}\norders off: {detail}"
        return row

    return record


@pytest.fixture(scope="session")
def shop_keys() -> ShopKeys:
    return ShopKeys.random()


@pytest.fixture(scope="package")
def stack(shop_keys: ShopKeys) -> Iterator[Stack]:
    """The shared stack: one worker (two processes), beat, Flower, on a private Redis."""
    admin = services.ensure_default_postgres()
    url = services.create_database(admin)
    try:
        with services.TempRedis() as broker, Stack(url, broker.url, workers=1, beat=True, flower=True,
                                                   keys=shop_keys) as running:
            yield running
    finally:
        services.drop_database(url)


@pytest.fixture
def bank(stack: Stack) -> Iterator[Stack]:
    """The shared stack with the bank's faults cleared before and after the test."""
    stack.clear_faults()
    yield stack
    stack.clear_faults()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The secrets scan reads the logs every other scenario produced: it runs after the last of them
    # (and right after, so the shared stack is not started twice when the whole suite runs).
    scan = [item for item in items if item.path.name == LAST_MODULE]
    if not scan:
        return
    rest = [item for item in items if item.path.name != LAST_MODULE]
    here = scan[0].path.parent
    last = max((i for i, item in enumerate(rest) if item.path.parent == here), default=len(rest) - 1)
    items[:] = rest[: last + 1] + scan + rest[last + 1 :]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    rows = config.stash.get(LEDGER_KEY, [])
    if not rows:
        return
    head = ("scenario", "payments", "settled", "lost", "duplicated", "wrong")
    width = max(len(head[0]), *(len(r.scenario) for r in rows))
    terminalreporter.section("fault suite: payments")
    terminalreporter.write_line(f"{head[0]:<{width}}  " + "  ".join(f"{h:>10}" for h in head[1:]))
    for r in rows:
        values = (r.payments, r.settled, r.lost, r.duplicated, r.wrong)
        terminalreporter.write_line(f"{r.scenario:<{width}}  " + "  ".join(f"{v:>10}" for v in values))
