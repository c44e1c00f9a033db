"""A test month: 20 generated days over the three journal kinds, then injected losses; the
reconciliation finds each injected problem, in the right class, and nothing else."""

import json
from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from tests.servers import mariadb_database, postgres_database

from vaxreport.ledger import schema as s
from vaxreport.pipeline import Runtime, run_day
from vaxreport.reconcile.run import reconcile_month
from vaxreport.synthetic.seed import generate_into

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MONTH = date(2026, 10, 1)
DAYS = [MONTH + timedelta(days=i) for i in range(20)]
SOURCES = ["vaxreport_source_embedded", "vaxreport_source_journal", "vaxreport_source_ehr"]
CLASS_OF = {
    "accepted": "accepted",
    "duplicate": "duplicate",
    "rejected_local": "rejected_local",
    "excluded": "excluded",
}


@pytest.fixture
def month_of_three_sources(embedded, emulator, monkeypatch):
    with postgres_database() as pg, mariadb_database() as maria:
        monkeypatch.setenv(
            "AIRFLOW_CONN_VAXREPORT_SOURCE_JOURNAL", json.dumps({**pg, "extra": {"kind": "vaccination_journal"}})
        )
        monkeypatch.setenv("AIRFLOW_CONN_VAXREPORT_SOURCE_EHR", json.dumps({**maria, "extra": {"kind": "general_ehr"}}))
        monkeypatch.setenv("VAXREPORT_SOURCES", ",".join(SOURCES))
        rt = Runtime()
        generated = []
        for day in DAYS:
            for conn_id in SOURCES:
                generated += generate_into(rt, conn_id, day, records=60, seed=31)
            run_day(rt, day)
        yield rt, generated


def _in_month(vaccination_date: str) -> bool:
    return "2026-10-01" <= vaccination_date < "2026-11-01"


def test_reconciliation_finds_each_injected_problem_and_nothing_else(month_of_three_sources, emulator):
    rt, generated = month_of_three_sources
    given = [r for r in generated if _in_month(r.vaccination_date)]
    expected = {klass: sum(CLASS_OF[r.expected_state] == klass for r in given) for klass in CLASS_OF.values()}

    clean = reconcile_month(Runtime(), MONTH)
    assert clean["missing"] == 0
    assert clean["unexplained"] == 0
    assert clean["failed_or_pending"] == 0
    assert clean["accepted"] + clean["rejected_register"] == expected["accepted"]
    assert clean["rejected_register"] == clean["findings_moved"]
    assert {k: clean[k] for k in ("duplicate", "rejected_local", "excluded")} == {
        k: expected[k] for k in ("duplicate", "rejected_local", "excluded")
    }

    accepted = sorted(r.record_id for r in given if r.expected_state == "accepted")
    # 1. three records lost from the ledger
    lost = accepted[:3]
    with rt.ledger().begin() as conn:
        conn.execute(sa.delete(s.record_versions).where(s.record_versions.c.source_record_id.in_(lost)))
    # 2. two records the register silently dropped
    unit_of = {r.record_id: r.care_unit_hsa_id for r in given}
    dropped = [rid for rid in accepted[3:] if unit_of[rid] not in {unit_of[x] for x in lost}][:2]
    held = {i["identifier_value"]: i["id"] for i in emulator.immunizations() if not i["deleted"]}
    with Runtime().registry() as client:
        for rid in dropped:
            assert client.request("DELETE", f"/fhir/Immunization/{held[rid]}").status_code == 204
    # 3. two late registrations: given in October, registered after the month closed
    november = generate_into(rt, "vaxreport_source_embedded", date(2026, 11, 3), records=40, seed=5)
    late = [r for r in november if r.expected_state == "accepted" and not _in_month(r.vaccination_date)][:2]
    # (some of that day were given in October anyway: late registrations of their own)
    late_anyway = sum(_in_month(r.vaccination_date) for r in november)
    with rt.engine("vaxreport_source_embedded").begin() as conn:
        for r in late:
            conn.execute(
                sa.text("UPDATE journalexport SET vaccinationsdatum = '2026-10-15' WHERE post_id = :p"),
                {"p": r.record_id},
            )

    found = reconcile_month(Runtime(), MONTH)
    assert found["missing"] == 3
    assert found["unexplained"] == 2
    assert found["failed_or_pending"] == 2 + late_anyway, (found, late_anyway)
    assert found["accepted"] + found["rejected_register"] == expected["accepted"] - 3
    assert any("missing" in p for p in found["problems"])
    report = json.dumps(found)
    listed = (embedded_reports(found) / "missing.csv").read_text()
    assert sorted(line.split(",")[1] for line in listed.splitlines()[1:]) == sorted(lost)
    differences = (embedded_reports(found) / "register_counts.csv").read_text()
    assert sum(int(line.split(",")[-1] or 0) for line in differences.splitlines()[1:]) == 2
    assert "personnummer" not in report


def embedded_reports(summary: dict):
    from pathlib import Path

    return Path(summary["report"]).parent


def test_month_of_the_run_is_the_previous_calendar_month():
    from datetime import UTC, datetime

    from vaxreport.reconcile.month import month_bounds, previous_month

    assert previous_month(datetime(2026, 11, 3, 3, tzinfo=UTC)) == date(2026, 10, 1)
    assert previous_month(datetime(2027, 1, 2, 3, tzinfo=UTC)) == date(2026, 12, 1)
    assert previous_month(datetime(2026, 10, 31, 23, 30, tzinfo=UTC)) == date(2026, 10, 1)  # 1 Nov in Stockholm
    assert month_bounds(date(2026, 12, 9)) == (date(2026, 12, 1), date(2027, 1, 1))
