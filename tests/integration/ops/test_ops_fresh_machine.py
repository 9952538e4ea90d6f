"""`make test` on a machine with only Python: the PostgreSQL it needs comes from a wheel.

This machine has PostgreSQL installed, so the suite uses it; this test proves the fallback that a
fresh machine takes (tests/support/services.py) really runs: a cluster from the pgserver wheel's
binaries, migrated by Alembic like any other test database.
"""

from __future__ import annotations

import psycopg2
import pytest

from tests.support import services

pytestmark = pytest.mark.integration


def test_the_wheels_postgresql_binaries_run_a_migrated_cluster():
    # Given the PostgreSQL binaries shipped in the pgserver wheel (a requirements-dev pin)
    bindir = services.wheel_pg_bindir()
    assert bindir is not None, "pgserver is missing from the virtualenv (requirements-dev.txt)"

    # When a private cluster is built from them and the migrations run on a new database
    with services.TempPostgres(bindir=bindir) as pg:
        url = services.create_database(pg.admin_url)
        conn = psycopg2.connect(url.replace("postgresql+psycopg2://", "postgresql://"), connect_timeout=5)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM alembic_version")
                versions = cur.fetchone()
                cur.execute("SHOW server_version")
                server = cur.fetchone()
        finally:
            conn.close()

    # Then the schema is at its head revision on that server
    assert versions == (1,)
    assert server is not None
    assert server[0].split(".")[0].isdigit()
