"""An Airflow home of its own for the DAG tests, migrated once per session."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import ROOT

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def airflow_environment(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DEFAULT_TIMEZONE": "Europe/Stockholm",
        "PYTHONPATH": f"{ROOT / 'include'}:{ROOT / 'plugins'}:{ROOT}",
        "GX_ANALYTICS_ENABLED": "false",
    }


def lose_one_accepted_record(ledger: sa.Engine, month: str) -> str:
    """Delete from the ledger one accepted record given in `month` (YYYY-MM), as if it had been
    lost: the reconciliation must find it missing. Returns its source record id."""
    with ledger.begin() as conn:
        lost = conn.execute(
            sa.text(
                "SELECT source_record_id FROM record_versions WHERE state = 'accepted'"
                " AND substr(vaccination_date, 1, 7) = :month ORDER BY source_record_id LIMIT 1"
            ),
            {"month": month},
        ).scalar_one()
        conn.execute(sa.text("DELETE FROM record_versions WHERE source_record_id = :rid"), {"rid": lost})
    return lost


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-home")
    subprocess.run(
        [AIRFLOW, "db", "migrate"], env=airflow_environment(home), check=True, capture_output=True, timeout=600
    )
    return home
