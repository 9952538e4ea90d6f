"""Session-wide fixtures: real services the integration tests share.

An unavailable service fails the tests that need it (never a skip), so CI cannot pass by testing less.
"""

from __future__ import annotations

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
