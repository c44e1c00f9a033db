"""The monthly reconciliation DAG with dag.test(): green when the month adds up, red (with the
reason in the log) when a record is missing."""

import json
import subprocess
import sys
from datetime import date

import pytest

from tests.conftest import ROOT, embedded_environment
from tests.dags.conftest import airflow_environment, lose_one_accepted_record

pytestmark = [pytest.mark.dags, pytest.mark.slow]
DAYS = [date(2026, 9, 10), date(2026, 9, 11)]


def run_monthly(airflow_home, env) -> tuple[str, str]:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "dags" / "dag_test_runner.py"),
            str(ROOT / "dags"),
            "vaccinations_monthly_reconciliation",
            json.dumps({"month": "2026-09"}),
        ],
        env={**airflow_environment(airflow_home), **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    state = next((ln.split()[-1] for ln in output.splitlines() if ln.startswith("DAGRUN_STATE")), "none")
    return state, output


def test_monthly_dag_is_green_when_the_month_adds_up_and_red_when_a_record_is_missing(
    tmp_path, airflow_home, emulator, monkeypatch
):
    from vaxreport.pipeline import Runtime, run_day
    from vaxreport.synthetic.seed import generate_into

    home = tmp_path / "var"
    env = embedded_environment(home, emulator.base_url)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    rt = Runtime()
    for day in DAYS:
        generate_into(rt, "vaxreport_source_embedded", day, records=150, seed=2)
        run_day(rt, day)

    state, log = run_monthly(airflow_home, env)
    assert state.endswith("success"), log[-3000:]
    assert "vaxreport reconciliation 2026-09:" in log
    assert "missing=0" in log
    assert (home / "reports" / "reconciliation" / "2026-09" / "index.html").exists()

    lose_one_accepted_record(rt.ledger(), "2026-09")
    state, log = run_monthly(airflow_home, env)
    assert state.endswith("failed"), log[-3000:]
    assert "1 records missing from the ledger" in log
