"""A daily run on CeleryExecutor with two workers, on this machine's Redis and PostgreSQL.

The deployment is `airflow_stack` with the CeleryExecutor: the scheduler queues task instances on
Redis (a queue of the stack's own), two `airflow celery worker` processes (one task at a time
each) take them, and the ledger is on PostgreSQL, where submission shares claim bundles with row
locks. The day comes from two journal sources (SQLite and PostgreSQL), and shares are made small
(VAXREPORT_BUNDLES_PER_SHARE), so the run has enough mapped task instances for both workers.

Then one worker is stopped and the same day runs again into a fresh ledger and a fresh register:
the two runs must leave the same outcome for every record and the same records in the register.
Each worker names itself as the hostname its task instances record (`worker_name.py`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import date

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import start_emulator
from tests.dags.airflow_stack import airflow_stack
from tests.servers import postgres_database

pytestmark = [pytest.mark.dags, pytest.mark.slow]

DAY = date(2026, 11, 16)
SOURCES = {"vaxreport_source_embedded": 11, "vaxreport_source_journal": 12}  # connection id: seed
RECORDS = 500  # per source: a few bundles of up to 100 in all, shares of 2
RUN_TIMEOUT_S = 600


def _sqlalchemy_url(conn: dict) -> str:
    return f"postgresql+psycopg2://{conn['login']}@{conn['host']}:{conn['port']}/{conn['schema']}"


def _ledger_outcomes(conn: dict) -> dict[tuple[str, str], tuple[str, str | None]]:
    engine = sa.create_engine(_sqlalchemy_url(conn))
    try:
        with engine.connect() as c:
            rows = c.execute(
                sa.text("SELECT source, source_record_id, state, code FROM record_versions WHERE state <> 'superseded'")
            )
            return {(r.source, r.source_record_id): (r.state, r.code) for r in rows}
    finally:
        engine.dispose()


def _register_records(base_url: str) -> Counter:
    """What the register holds, without its own ids (each register numbers them itself)."""
    records = httpx.get(f"{base_url}/admin/immunizations", timeout=30).json()
    return Counter(
        (r["identifier_system"], r["identifier_value"], r["npl_id"], r["date"], r["lot"], r["dose"], r["deleted"])
        for r in records
    )


def _point_at(af, ledger: dict, register_url: str) -> None:
    """The ledger and register connections live in Airflow's database, so they can change between
    runs while the workers keep running."""
    for conn_id, value in (
        ("vaxreport_db", ledger),
        ("nvr_api", {"conn_type": "http", "host": register_url, "login": "vaxreport-dev", "password": "dev-secret"}),
    ):
        af.airflow("connections", "delete", conn_id, check=False)
        af.airflow("connections", "add", conn_id, "--conn-json", json.dumps(value))


def _task_hosts(af, run_id: str) -> list[tuple[str, int, str, str]]:
    return af.query(
        "SELECT task_id, map_index, hostname, state FROM task_instance WHERE dag_id = 'vaccinations_daily'"
        " AND run_id = %s AND state <> 'skipped' ORDER BY task_id, map_index",
        (run_id,),
    )


def _generate(env: dict[str, str], cwd) -> None:
    """Each source's day, by the project's own generator (distinct record ids and persons per source)."""
    for conn_id, seed in SOURCES.items():
        command = [sys.executable, "-m", "vaxreport", "generate", "--source", conn_id, "--day", DAY.isoformat()]
        command += ["--records", str(RECORDS), "--seed", str(seed)]
        subprocess.run(command, env={**os.environ, **env}, cwd=cwd, check=True, capture_output=True, timeout=300)


def test_two_celery_workers_share_a_run_and_agree_with_one(tmp_path):
    home = tmp_path / "var"
    home.mkdir()
    two = start_emulator(tmp_path, "--db", str(tmp_path / "register-two.sqlite"))
    one = start_emulator(tmp_path, "--db", str(tmp_path / "register-one.sqlite"))
    try:
        with (
            postgres_database() as journal,
            postgres_database() as ledger_two,
            postgres_database() as ledger_one,
        ):
            env = {
                "VAXREPORT_HOME": str(home),
                "VAXREPORT_SOURCES": ",".join(SOURCES),
                "VAXREPORT_BUNDLES_PER_SHARE": "2",
                "AIRFLOW_CONN_VAXREPORT_SOURCE_EMBEDDED": json.dumps(
                    {"conn_type": "sqlite", "host": str(home / "source.sqlite"), "extra": {"kind": "legacy_export"}}
                ),
                "AIRFLOW_CONN_VAXREPORT_SOURCE_JOURNAL": json.dumps(
                    {**journal, "extra": {"kind": "vaccination_journal"}}
                ),
            }
            _generate(env, tmp_path)
            with airflow_stack(tmp_path, env, name="celery", workers=2, extra_logs=[two.log_path, one.log_path]) as af:
                af.unpause("vaccinations_daily")

                # -- both workers -----------------------------------------------------------
                _point_at(af, ledger_two, two.base_url)
                run = af.trigger("vaccinations_daily", {"day": DAY.isoformat()})
                assert af.wait_for_run("vaccinations_daily", run, RUN_TIMEOUT_S) == "success"
                hosts = _task_hosts(af, run)
                mapped = [h for h in hosts if h[1] >= 0]
                assert sum(h[0] == "extract_vaccinations" for h in mapped) == len(SOURCES), hosts
                assert sum(h[0] == "submit_bundles" for h in mapped) >= 2, hosts
                assert {h[2] for h in mapped} == {"worker-1", "worker-2"}, hosts
                assert {h[3] for h in hosts} == {"success"}, hosts

                # -- one worker, the same day into a fresh ledger and register --------------
                af.stop_worker("worker-2")
                _point_at(af, ledger_one, one.base_url)
                again = af.trigger("vaccinations_daily", {"day": DAY.isoformat()})
                assert af.wait_for_run("vaccinations_daily", again, RUN_TIMEOUT_S) == "success"
                assert {h[2] for h in _task_hosts(af, again)} == {"worker-1"}

            shared, single = _ledger_outcomes(ledger_two), _ledger_outcomes(ledger_one)
        assert len(shared) == len(SOURCES) * RECORDS
        assert shared == single
        held = _register_records(two.base_url)
        assert held == _register_records(one.base_url)
        assert set(held.values()) == {1}  # every record once: nothing doubled
        accepted = sum(state == "accepted" for state, _ in shared.values())
        assert sum(not record[-1] for record in held) == accepted > 0
    finally:
        two.stop()
        one.stop()
