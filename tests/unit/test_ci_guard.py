"""The CI flag: with CI set, a skipped test fails the run (so CI cannot go green by testing less)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = (Path(__file__).resolve().parents[1] / "conftest.py").read_text()


@pytest.mark.parametrize(("ci", "expected"), [("true", 1), ("", 0)])
def test_a_skip_fails_the_run_only_in_ci(pytester: pytest.Pytester, monkeypatch, ci: str, expected: int):
    # Given the suite's conftest and a test that skips (as a missing service once would have)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile("import pytest\n\ndef test_needs_a_service():\n    pytest.skip('no service')\n")
    monkeypatch.setenv("CI", ci)

    # When pytest runs
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")

    # Then CI turns the skip into a failed run, and a developer's run only reports it
    assert result.ret == expected
