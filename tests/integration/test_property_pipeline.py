"""Arbitrary journal rows through extraction and validation: no crash, and every row ends in a
recorded state (nothing lost, nothing left half-done)."""

import json
import string
import tempfile
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaxreport.ledger import schema as s
from vaxreport.pipeline import Runtime, extract_day, validate_day
from vaxreport.registry import catalog as cat
from vaxreport.sources import writers
from vaxreport.sources.mapping import load_kind

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DAY = date(2026, 11, 19)
CATALOG = Path(__file__).resolve().parents[2] / "include" / "nvr_emulator" / "catalog.json"

value = st.one_of(
    st.none(),
    st.text(max_size=30),
    st.text(alphabet=string.digits + "-+", max_size=13),
    st.sampled_from(["Priorix", "A71CB401", "2026-11-19", "J", "N", "900101-9802", "0", "99"]),
)
COLUMNS = (
    "personnr",
    "vaccin",
    "satsnummer",
    "dosnummer",
    "vaccinationsdatum",
    "vardgivare_hsaid",
    "vardgivare",
    "vardenhet_hsaid",
    "vardenhet",
    "makulerad",
    "registrerad",
)
row = st.fixed_dictionaries(dict.fromkeys(COLUMNS, value))


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(row, min_size=1, max_size=30))
def test_any_rows_end_in_a_state(rows, monkeypatch):
    home = Path(tempfile.mkdtemp())
    monkeypatch.setenv("VAXREPORT_HOME", str(home))
    monkeypatch.setenv("VAXREPORT_SOURCES", "src")
    monkeypatch.setenv(
        "AIRFLOW_CONN_SRC",
        json.dumps({"conn_type": "sqlite", "host": str(home / "s.sqlite"), "extra": {"kind": "legacy_export"}}),
    )
    monkeypatch.setenv("AIRFLOW_CONN_VAXREPORT_DB", json.dumps({"conn_type": "sqlite", "host": str(home / "l.sqlite")}))
    rt = Runtime()
    products = json.loads(CATALOG.read_text())["products"]
    cat.store(
        rt.ledger(),
        [
            cat.Product(p["npl_id"], p["name"], p["programme"], frozenset(b["lot"] for b in p["batches"]))
            for p in products
        ],
    )
    writers.create_schema(rt.engine("src"), load_kind("legacy_export"))
    with rt.engine("src").begin() as conn:
        for i, r in enumerate(rows):
            conn.execute(
                sa.text(
                    "INSERT INTO journalexport (post_id, personnr, vaccin, satsnummer, dosnummer, vaccinationsdatum,"
                    " vardgivare_hsaid, vardgivare, vardenhet_hsaid, vardenhet, makulerad, registrerad, andrad) VALUES"
                    " (:post_id, :personnr, :vaccin, :satsnummer, :dosnummer, :vaccinationsdatum, :vardgivare_hsaid,"
                    " :vardgivare, :vardenhet_hsaid, :vardenhet, coalesce(:makulerad, 'N'), coalesce(:registrerad, ''),"
                    " '2026-11-19 12:00:00')"
                ),
                {**r, "post_id": f"P{i}"},
            )
    extract_day(rt, DAY)
    validate_day(rt, DAY)
    rv = s.record_versions
    with rt.ledger().connect() as conn:
        states = dict(conn.execute(sa.select(rv.c.source_record_id, rv.c.state)).all())
    assert set(states) == {f"P{i}" for i in range(len(rows))}
    assert set(states.values()) <= {"excluded", "rejected_local", "ready"}
    rt.close()
