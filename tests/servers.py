"""Throwaway databases on the machine's real PostgreSQL and MariaDB servers.

Tests that claim to cover those sources talk to the real servers. Where a server is missing they
skip with the reason, unless VAXREPORT_REQUIRE_SERVERS=1 (set by .ci/run): then it is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

PG_ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
MARIA_ADMIN = "mysql+pymysql://root@127.0.0.1:3306/"


def _unavailable(what: str, exc: Exception) -> None:
    reason = f"{what} is not reachable on 127.0.0.1 ({type(exc).__name__}): start it or see README"
    if os.environ.get("VAXREPORT_REQUIRE_SERVERS") == "1":
        pytest.fail(reason + " (VAXREPORT_REQUIRE_SERVERS=1 makes this a failure)")
    pytest.skip(reason)


@contextmanager
def postgres_database() -> Iterator[dict]:
    """A fresh PostgreSQL database; yields the connection dict (Airflow's JSON form)."""
    name = f"vx_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        _unavailable("PostgreSQL", exc)
    try:
        yield {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": name}
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@contextmanager
def mariadb_database() -> Iterator[dict]:
    name = f"vx_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(MARIA_ADMIN)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    except sa.exc.OperationalError as exc:
        admin.dispose()
        _unavailable("MariaDB", exc)
    try:
        yield {"conn_type": "mysql", "host": "127.0.0.1", "port": 3306, "login": "root", "schema": name}
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        admin.dispose()
