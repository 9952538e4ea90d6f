"""`make test` on a machine with only Python: the PostgreSQL it needs comes from a wheel.

This machine has PostgreSQL installed, so the suite uses it; this test proves the fallback that a
fresh machine takes (tests/support/services.py) really runs: a cluster from the pgserver wheel's
binaries, migrated by Alembic like any other test database.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from tests.support import services

pytestmark = pytest.mark.integration


def _migrated_cluster_answers(bindir: str) -> tuple[Any, Any]:
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
    return versions, server


def test_the_wheels_postgresql_binaries_run_a_migrated_cluster():
    # Given the PostgreSQL binaries shipped in the pgserver wheel (a requirements-dev pin)
    bindir = services.wheel_pg_bindir()
    assert bindir is not None, "pgserver is missing from the virtualenv (requirements-dev.txt)"

    # When a private cluster is built from them and the migrations run on a new database
    versions, server = _migrated_cluster_answers(bindir)

    # Then the schema is at its head revision on that server
    assert versions == (1,)
    assert server is not None
    assert server[0].split(".")[0].isdigit()


def test_the_wheels_binaries_run_from_a_checkout_the_postgres_user_cannot_enter():
    # Given the wheel's installation inside a folder only its owner may enter, like a clone under
    # /root or in a `mktemp -d` folder (as root, the server itself runs as the `postgres` user)
    bindir = services.wheel_pg_bindir()
    assert bindir is not None, "pgserver is missing from the virtualenv (requirements-dev.txt)"
    private = Path(tempfile.mkdtemp(prefix="qpay-private-checkout-"))
    try:
        os.chmod(private, 0o700)
        private_bindir = services.copy_pg_install(bindir, str(private))

        # When a migrated cluster is built from those binaries
        versions, server = _migrated_cluster_answers(private_bindir)
    finally:
        shutil.rmtree(private, ignore_errors=True)

    # Then it runs all the same
    assert versions == (1,)
    assert server is not None
