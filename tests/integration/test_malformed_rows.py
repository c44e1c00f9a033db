"""Journal rows nobody should have written never crash a run: each ends rejected_local, with a reason."""

import json
from datetime import date

import pytest
import sqlalchemy as sa
from tests.servers import mariadb_database, postgres_database

from vaxreport.ledger import schema as s
from vaxreport.pipeline import Runtime, run_day
from vaxreport.sources import writers
from vaxreport.sources.mapping import load_kind

pytestmark = pytest.mark.integration
DAY = date(2026, 11, 19)
CHANGED = "2026-11-19 10:00:00"  # inside the day, local time
OK = {
    "personnr": "900101-9802",
    "vaccin": "Priorix",
    "satsnummer": "A71CB401",
    "dosnummer": None,
    "vaccinationsdatum": "2026-11-19",
    "vardgivare_hsaid": "SE2321000016-0001",
    "vardgivare": "Region",
    "vardenhet_hsaid": "SE2321000016-BVC1",
    "vardenhet": "BVC",
    "makulerad": "N",
    "registrerad": CHANGED,
    "andrad": CHANGED,
}

LEGACY_ROWS = {
    "M-NULLS": dict.fromkeys(OK) | {"makulerad": "N", "registrerad": CHANGED, "andrad": CHANGED},
    "M-DATE": OK | {"vaccinationsdatum": "19/11/2026"},
    "M-DOSE-TEXT": OK | {"dosnummer": "två"},
    "M-DOSE-ABSURD": OK | {"dosnummer": "9999"},
    "M-FLAG": OK | {"makulerad": "kanske"},
    "M-REGISTERED": OK | {"registrerad": "igår förmiddag"},
    "M-PERSON": OK | {"personnr": "okänd"},
    "M-LONG-BATCH": OK | {"satsnummer": "X" * 5000},
    "M-YEAR": OK | {"vaccinationsdatum": "0001-01-01"},
}


def _states(rt: Runtime) -> dict[str, tuple[str, str, str]]:
    rv = s.record_versions
    with rt.ledger().connect() as conn:
        return {
            r.source_record_id: (r.state, r.code, r.reason_en)
            for r in conn.execute(sa.select(rv.c.source_record_id, rv.c.state, rv.c.code, rv.c.reason_en))
        }


def test_malformed_legacy_rows_are_rejected_locally_with_reasons(embedded, emulator):
    rt = Runtime()
    engine = rt.engine("vaxreport_source_embedded")
    writers.create_schema(engine, load_kind("legacy_export"))
    with engine.begin() as conn:
        for post_id, row in LEGACY_ROWS.items():
            cols = ", ".join(["post_id", *row])
            conn.execute(
                sa.text(f"INSERT INTO journalexport ({cols}) VALUES (:post_id, {', '.join(':' + c for c in row)})"),
                {"post_id": post_id, **row},
            )
        # text that is not UTF-8, and a row without any id
        conn.exec_driver_sql(
            "INSERT INTO journalexport (post_id, personnr, vaccin, satsnummer, vaccinationsdatum, vardgivare_hsaid,"
            " vardenhet_hsaid, makulerad, registrerad, andrad) VALUES ('M-ENCODING', '900101-9802',"
            " CAST(X'5072696FF8726978' AS TEXT), 'A71CB401', '2026-11-19', 'SE2321000016-0001', 'SE2321000016-BVC1',"
            f" 'N', '{CHANGED}', '{CHANGED}')"
        )
        conn.exec_driver_sql(
            "INSERT INTO journalexport (post_id, personnr, makulerad, registrerad, andrad)"
            f" VALUES (NULL, '900101-9802', 'N', '{CHANGED}', '{CHANGED}')"
        )
    summary = run_day(rt, DAY)
    states = _states(rt)
    assert len(states) == len(LEGACY_ROWS) + 2 == summary["extracted"] == summary["rejected_local"]
    assert all(state == "rejected_local" and code and reason for state, code, reason in states.values())
    codes = {rid: code for rid, (_, code, _) in states.items()}
    assert codes["M-DATE"] == "DATE-FORMAT"
    assert codes["M-DOSE-TEXT"] == codes["M-DOSE-ABSURD"] == codes["M-FLAG"] == codes["M-REGISTERED"] == "SOURCE-FORMAT"
    assert codes["M-PERSON"] == codes["M-NULLS"] == "PERSONID-FORMAT"
    assert codes["M-LONG-BATCH"] == "BATCH-MISMATCH"
    assert codes["M-ENCODING"] == "VACCINE-UNKNOWN"
    assert codes["M-YEAR"] == "DATE-IMPLAUSIBLE"
    assert [c for rid, c in codes.items() if rid.startswith("unidentified-")] == ["SOURCE-FORMAT"]
    assert "dose number" in states["M-DOSE-TEXT"][2]


def test_absurd_values_in_typed_sources(embedded, emulator, monkeypatch):
    with postgres_database() as pg, mariadb_database() as maria:
        monkeypatch.setenv("AIRFLOW_CONN_SRC_PG", json.dumps({**pg, "extra": {"kind": "vaccination_journal"}}))
        monkeypatch.setenv("AIRFLOW_CONN_SRC_MARIA", json.dumps({**maria, "extra": {"kind": "general_ehr"}}))
        monkeypatch.setenv("VAXREPORT_SOURCES", "src_pg,src_maria")
        rt = Runtime()
        for conn_id, kind in (("src_pg", "vaccination_journal"), ("src_maria", "general_ehr")):
            writers.create_schema(rt.engine(conn_id), load_kind(kind))
        with rt.engine("src_pg").begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO vaccinations (id, patient_ssn, npl_id, lot_number, dose_number, administered_on,"
                " care_provider_hsa_id, care_unit_hsa_id, voided, registered_at, updated_at) VALUES"
                " ('PG-1', NULL, NULL, NULL, 32000, '2026-11-19', NULL, NULL, false,"
                "  '2026-11-19 10:00+01', '2026-11-19 10:00+01'),"
                " ('PG-2', '189001019802', '20990101000061', 'A71CB401', -3, '1066-10-14', 'SE2321000016-0001',"
                "  'SE2321000016-BVC1', false, '2026-11-19 10:00+01', '2026-11-19 10:00+01')"
            )
        with rt.engine("src_maria").begin() as conn:
            conn.exec_driver_sql("INSERT INTO patients (id, ssn) VALUES (1, '')")
            conn.exec_driver_sql("INSERT INTO units (id, unit_hsa_id) VALUES (1, '')")
            conn.exec_driver_sql(
                "INSERT INTO administrations (id, patient_id, unit_id, drug_code, lot, dose_seq, administered_at,"
                " status, recorded_at, modified_at) VALUES"
                " ('EHR-1', 1, 1, NULL, NULL, NULL, '2026-11-19 09:00:00', 'gvien', '2026-11-19 09:00:00',"
                "  '2026-11-19 09:00:00')"
            )
        summary = run_day(rt, DAY)
        states = _states(rt)
        assert summary["failed_sources"] == []
        assert {rid: (st, code) for rid, (st, code, _) in states.items()} == {
            "PG-1": ("rejected_local", "SOURCE-FORMAT"),
            "PG-2": ("rejected_local", "SOURCE-FORMAT"),
            "EHR-1": ("rejected_local", "SOURCE-FORMAT"),
        }
