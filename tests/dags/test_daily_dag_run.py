"""The daily DAG end to end with dag.test() against a real emulator process."""

import json
import re
import subprocess
import sys
from datetime import date

import pytest
import sqlalchemy as sa

from tests.conftest import ARTIFACTS, ROOT, embedded_environment
from tests.dags.conftest import airflow_environment

pytestmark = [pytest.mark.dags, pytest.mark.slow]
DAY = date(2026, 11, 19)
TERMINAL = ("excluded", "rejected_local", "accepted", "duplicate", "rejected_register", "failed")
# 12 digits, or 10 with a separator, as a personnummer is written; record ids are longer runs
PNR_SHAPED = re.compile(r"(?<![\d-])(?:\d{12}|\d{6}[-+]\d{4}|\d{8}[-+]\d{4})(?![\d])")


def run_dag(airflow_home, env, conf) -> str:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "dags" / "dag_test_runner.py"),
            str(ROOT / "dags"),
            "vaccinations_daily",
            json.dumps(conf),
        ],
        env={**airflow_environment(airflow_home), **env},
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "DAGRUN_STATE success" in output, output[-4000:]
    return output


def test_daily_dag_reports_every_record_as_its_ground_truth_says(tmp_path, airflow_home, emulator):
    from vaxreport.sources import embedded
    from vaxreport.synthetic.generate import generate_day

    home = tmp_path / "var"
    env = embedded_environment(home, emulator.base_url)
    source = sa.create_engine(f"sqlite:///{home / 'source.sqlite'}")
    home.mkdir()
    records = generate_day(DAY, records=2000, seed=21)
    embedded.write_day(source, records, DAY)
    truth = embedded.ground_truth(source, DAY)

    log = run_dag(airflow_home, env, {"day": DAY.isoformat()})
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"dag-test-{DAY}.log").write_text(log)

    ledger = sa.create_engine(f"sqlite:///{home / 'ledger.sqlite'}")
    with ledger.connect() as conn:
        states = {
            r.source_record_id: (r.state, r.code)
            for r in conn.execute(
                sa.text("SELECT source_record_id, state, code FROM record_versions WHERE window_day = :d"),
                {"d": DAY.isoformat()},
            )
        }
    assert {rid: states.get(rid) for rid in truth if states.get(rid) != truth[rid]} == {}
    summary = json.loads((home / "reports" / DAY.isoformat() / "summary.json").read_text())
    assert summary["extracted"] == len(records) == sum(summary[k] for k in TERMINAL)
    assert f"vaxreport run {DAY}: extracted={len(records)}" in log
    assert emulator.stats()["immunizations"] == summary["accepted"]

    # no personnummer in any log line: neither the persons of this day nor anything shaped like one
    persons = {r.patient_id for r in records}
    persons |= {p[2:] for p in persons} | {f"{p[2:8]}-{p[8:]}" for p in persons}
    assert not [p for p in persons if p in log]
    assert PNR_SHAPED.findall(log) == []

    # nor in any XCom value, nor in any report file outside the owner-only folders
    with sa.create_engine(f"sqlite:///{airflow_home / 'airflow.db'}").connect() as conn:
        xcoms = [str(v) for v in conn.execute(sa.text("SELECT value FROM xcom")).scalars()]
    assert xcoms  # the tasks did return their counts
    reports = [p.read_text(errors="replace") for p in (home / "reports").rglob("*") if p.is_file()]
    assert len(reports) >= 3
    for text in [*xcoms, *reports]:
        assert not [p for p in persons if p in text]
        assert PNR_SHAPED.findall(text) == []

    # the same day again sends nothing and changes nothing at the register
    held = emulator.stats()
    run_dag(airflow_home, env, {"day": DAY.isoformat()})
    again = json.loads((home / "reports" / DAY.isoformat() / "summary.json").read_text())
    assert again["sent"] == 0
    assert {k: again[k] for k in TERMINAL} == {k: summary[k] for k in TERMINAL}
    assert emulator.stats()["immunizations"] == held["immunizations"]


def test_dry_run_param_sends_nothing(tmp_path, airflow_home, emulator):
    from vaxreport.sources import embedded
    from vaxreport.synthetic.generate import generate_day

    home = tmp_path / "var"
    home.mkdir()
    source = sa.create_engine(f"sqlite:///{home / 'source.sqlite'}")
    embedded.write_day(source, generate_day(DAY, records=300, seed=4), DAY)
    run_dag(airflow_home, embedded_environment(home, emulator.base_url), {"day": DAY.isoformat(), "dry_run": True})
    assert list((home / "bundles" / DAY.isoformat()).glob("bundle-*.json"))
    assert emulator.stats()["posts"] == 0
