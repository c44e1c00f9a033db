"""The daily steps through the package (no Airflow) against a real emulator process."""

import json
import stat
from datetime import date

import pytest
import sqlalchemy as sa
from fhir.resources.R4B.bundle import Bundle

from vaxreport.ledger import schema as s
from vaxreport.pipeline import Runtime, run_day
from vaxreport.sources import embedded
from vaxreport.synthetic.generate import generate_day

pytestmark = pytest.mark.integration
DAY = date(2026, 11, 21)
TERMINAL = ("excluded", "rejected_local", "accepted", "duplicate", "rejected_register", "failed")


def seed(rt: Runtime, records: int, day: date = DAY, seed_: int = 11) -> dict:
    embedded.write_day(rt.engine("vaxreport_source_embedded"), generate_day(day, records=records, seed=seed_), day)
    return embedded.ground_truth(rt.engine("vaxreport_source_embedded"), day)


def ledger_states(rt: Runtime, day: date = DAY) -> dict[str, tuple[str, str | None]]:
    rv = s.record_versions
    with rt.ledger().connect() as conn:
        rows = conn.execute(
            sa.select(rv.c.source_record_id, rv.c.state, rv.c.code).where(rv.c.window_day == day.isoformat())
        )
        return {r.source_record_id: (r.state, r.code) for r in rows}


def test_every_record_ends_in_its_ground_truth_state_and_a_rerun_sends_nothing(embedded, emulator):
    rt = Runtime()
    truth = seed(rt, 2000)
    first = run_day(rt, DAY)
    states = ledger_states(rt)
    assert states.keys() == truth.keys()
    wrong = {rid: (states[rid], truth[rid]) for rid in truth if states[rid] != truth[rid]}
    assert wrong == {}
    assert first["extracted"] == len(truth) == sum(first[k] for k in TERMINAL)
    assert first["failed"] == 0
    assert first["pending"] == 0
    sent_first = first["sent"]
    assert sent_first == first["accepted"] + first["duplicate"] + first["rejected_register"]
    held = emulator.stats()["immunizations"]
    assert held == first["accepted"]
    for name in ("ledger.sqlite", "ledger.sqlite-wal", "source.sqlite"):  # they hold personnummer
        path = embedded / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name

    again = run_day(Runtime(), DAY)
    assert again["sent"] == 0
    assert {k: again[k] for k in TERMINAL} == {k: first[k] for k in TERMINAL}
    assert emulator.stats()["immunizations"] == held


def test_rejection_report_lists_each_rejected_record_once_per_care_unit(embedded, emulator):
    import csv

    rt = Runtime()
    truth = seed(rt, 600)
    summary = run_day(rt, DAY)
    out = embedded / "reports" / DAY.isoformat() / "rejections"
    listed = []
    for path in out.glob("*.csv"):
        with path.open(encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        assert len({(r["record_id"]) for r in rows}) == len(rows)
        listed += rows
    expected = {rid for rid, (state, _) in truth.items() if state.startswith("rejected")}
    assert {r["record_id"] for r in listed} == expected
    assert all(r["reason_sv"] and r["reason_en"] and r["fix_en"] for r in listed)
    assert summary["report"].endswith("index.html")
    assert "person_id" not in listed[0]


def test_dry_run_writes_r4_bundles_of_at_most_100_and_sends_nothing(embedded, emulator):
    rt = Runtime()
    truth = seed(rt, 700)
    summary = run_day(rt, DAY, dry_run=True)
    folder = embedded / "bundles" / DAY.isoformat()
    files = sorted(folder.glob("bundle-*.json"))
    assert files
    assert files[0].name == "bundle-0001.json"
    entries = 0
    for path in files:
        bundle = Bundle.model_validate(json.loads(path.read_text()))
        assert bundle.type == "batch"
        assert 1 <= len(bundle.entry) <= 100
        entries += len(bundle.entry)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    ready = sum(1 for state, _ in truth.values() if state in {"accepted", "duplicate", "rejected_register"})
    assert entries == ready == summary["pending"]
    assert summary["sent"] == 0
    assert emulator.stats()["immunizations"] == 0

    real = run_day(Runtime(), DAY)
    assert real["sent"] == ready
    assert real["pending"] == 0
