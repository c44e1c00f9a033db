"""One daily run over the three journal-system kinds on their real databases: SQLite (legacy export),
PostgreSQL (vaccination journal) and MariaDB (general EHR), with exact counts against ground truth."""

import json
from collections import Counter
from datetime import date

import pytest
import sqlalchemy as sa
from tests.servers import mariadb_database, postgres_database

from vaxreport.ledger import schema as s
from vaxreport.pipeline import Runtime, extract_source, run_day
from vaxreport.sources import writers
from vaxreport.synthetic.seed import generate_into

pytestmark = pytest.mark.integration
DAY = date(2026, 11, 20)
SOURCES = ["vaxreport_source_embedded", "vaxreport_source_journal", "vaxreport_source_ehr"]


@pytest.fixture
def three_sources(embedded, monkeypatch):
    with postgres_database() as pg, mariadb_database() as maria:
        monkeypatch.setenv(
            "AIRFLOW_CONN_VAXREPORT_SOURCE_JOURNAL", json.dumps({**pg, "extra": {"kind": "vaccination_journal"}})
        )
        monkeypatch.setenv("AIRFLOW_CONN_VAXREPORT_SOURCE_EHR", json.dumps({**maria, "extra": {"kind": "general_ehr"}}))
        monkeypatch.setenv("VAXREPORT_SOURCES", ",".join(SOURCES))
        yield


def test_one_day_over_three_kinds_matches_ground_truth_exactly(three_sources, emulator):
    rt = Runtime()
    truth: dict[str, tuple[str, str | None]] = {}
    for conn_id, n in zip(SOURCES, (700, 700, 700), strict=True):
        generate_into(rt, conn_id, DAY, records=n, seed=3, defect_rate=0.12)
        truth.update(writers.ground_truth(rt.engine(conn_id), DAY))
    assert len(truth) == 2100

    summary = run_day(rt, DAY)
    rv = s.record_versions
    with rt.ledger().connect() as conn:
        rows = conn.execute(sa.select(rv.c.source, rv.c.source_record_id, rv.c.state, rv.c.code)).all()
    states = {r.source_record_id: (r.state, r.code) for r in rows}
    assert {rid: (states.get(rid), want) for rid, want in truth.items() if states.get(rid) != want} == {}
    assert len(states) == len(truth)
    assert Counter(r.source for r in rows) == {
        "urn:vaxreport:source:legacy-export": 700,
        "urn:vaxreport:source:vaccination-journal": 700,
        "urn:vaxreport:source:general-ehr": 700,
    }
    assert summary["failed_sources"] == []
    accepted = sum(state == "accepted" for state, _ in truth.values())
    assert summary["accepted"] == accepted == emulator.stats()["immunizations"]


def test_a_failing_source_does_not_stop_the_others(three_sources, emulator, monkeypatch):
    rt = Runtime()
    truth = {}
    for conn_id in SOURCES[:2]:
        generate_into(rt, conn_id, DAY, records=200, seed=3)
        truth.update(writers.ground_truth(rt.engine(conn_id), DAY))
    monkeypatch.setenv(
        "AIRFLOW_CONN_VAXREPORT_SOURCE_EHR",
        json.dumps(
            {
                "conn_type": "mysql",
                "host": "127.0.0.1",
                "port": 3306,
                "login": "root",
                "schema": "no_such_database",
                "extra": {"kind": "general_ehr"},
            }
        ),
    )
    summary = run_day(Runtime(), DAY)
    assert summary["failed_sources"] == ["vaxreport_source_ehr"]
    assert summary["extracted"] == len(truth)  # the two good sources are complete
    assert summary["accepted"] == sum(state == "accepted" for state, _ in truth.values())


def test_two_sources_of_one_kind_need_their_own_identifier_system(embedded, emulator, monkeypatch, tmp_path):
    """Two legacy exports with the kind's default system would meet in the ledger as versions of
    one record: neither is read until each has its own `system_uri`."""
    second = {"conn_type": "sqlite", "host": str(tmp_path / "second.sqlite"), "extra": {"kind": "legacy_export"}}
    monkeypatch.setenv("AIRFLOW_CONN_VAXREPORT_SOURCE_SECOND", json.dumps(second))
    monkeypatch.setenv("VAXREPORT_SOURCES", "vaxreport_source_embedded,vaxreport_source_second")
    rt = Runtime()
    for conn_id in rt.sources:
        generate_into(rt, conn_id, DAY, records=50, seed=3)
    with pytest.raises(ValueError, match=r"vaxreport_source_second: set a distinct extra\.system_uri"):
        extract_source(rt, "vaxreport_source_embedded", DAY)
    assert run_day(Runtime(), DAY)["failed_sources"] == ["vaxreport_source_embedded", "vaxreport_source_second"]

    second["extra"]["system_uri"] = "urn:region:source:legacy-export-north"
    monkeypatch.setenv("AIRFLOW_CONN_VAXREPORT_SOURCE_SECOND", json.dumps(second))
    summary = run_day(Runtime(), DAY)
    assert summary["failed_sources"] == []
    assert summary["extracted"] == 100
