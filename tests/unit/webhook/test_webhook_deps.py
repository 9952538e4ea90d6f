"""The receiver's unit of work: a one-statement unit from the app's Database, a test's unit as it is."""

from __future__ import annotations

from contextlib import nullcontext

from core.db import OneStatement
from webhook.deps import Database, core_unit


def test_the_apps_database_gives_the_receiver_a_one_statement_unit(tmp_path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'deps.db'}")
    with core_unit(database)() as db:
        assert isinstance(db, OneStatement)
        assert db.dialect == "sqlite"


def test_a_unit_of_work_a_test_swaps_in_is_used_as_it_is() -> None:
    def unit() -> nullcontext[str]:
        return nullcontext("the test's session")

    assert core_unit(unit) is unit
