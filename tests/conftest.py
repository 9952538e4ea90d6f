"""Session-wide fixtures: real services the integration tests share.

An unavailable service fails the tests that need it (never a skip), so CI cannot pass by testing less.
With CI set (.ci/run exports CI=true) a skipped or xfailed test of any kind fails the run as well.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support import services


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """The machine's PostgreSQL (started if down)."""
    return services.ensure_default_postgres()


@pytest.fixture
def pg_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test, dropped afterwards."""
    url = services.create_database(postgres_admin_url)
    yield url
    services.drop_database(url)


@pytest.fixture(scope="session")
def default_redis_url() -> str:
    """The machine's Redis on 6379 (started if down)."""
    return services.ensure_default_redis()


@pytest.fixture
def redis_server() -> Iterator[services.TempRedis]:
    """A private Redis for one test (a broker no other test shares)."""
    with services.TempRedis() as server:
        yield server


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI, a test that did not run is a failure: green must mean everything was tested."""
    if not os.environ.get("CI") or exitstatus != 0:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    stats = getattr(reporter, "stats", {})
    untested = [r.nodeid for kind in ("skipped", "xfailed", "xpassed") for r in stats.get(kind, [])]
    if untested:
        print(f"\nCI: {len(untested)} test(s) did not run as tests: {', '.join(untested[:10])}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
