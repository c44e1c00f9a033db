"""An Airflow home of its own for the DAG tests, migrated once per session."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-home")
    subprocess.run(
        [AIRFLOW, "db", "migrate"], env=airflow_environment(home), check=True, capture_output=True, timeout=600
    )
    return home
