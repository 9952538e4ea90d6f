"""Real gunicorn serving the app, with a private PostgreSQL and a private Redis the tests may stop."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support import procs, services

API_TOKEN = "integration-token-5c1e"


@dataclass
class Stack:
    pg: services.TempPostgres
    redis: services.TempRedis
    db_url: str
    base: str
    web: procs.Proc


@pytest.fixture(scope="package")
def stack() -> Iterator[Stack]:
    with services.TempPostgres() as pg, services.TempRedis() as redis_server:
        db_url = services.create_database(pg.admin_url)
        env = procs.base_env(
            DATABASE_URL=db_url,
            REDIS_URL=redis_server.url,
            API_TOKEN=API_TOKEN,
            QPAY_API_BASE_URL="http://127.0.0.1:9/QPay.WebAPI/api/",
            PUBLIC_BASE_URL="http://127.0.0.1:1",
            LOG_LEVEL="INFO",
        )
        web, base = procs.start_web(env, workers=2)
        try:
            yield Stack(pg, redis_server, db_url, base, web)
        finally:
            web.stop()
