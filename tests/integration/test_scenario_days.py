"""Several consecutive days of a journal's life: late registrations, corrections, voids and
corrected rejections. At the end the register holds exactly the valid, non-voided records in their
latest version, and the ledger tells each record's story."""

from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from vaxreport.ledger import schema as s
from vaxreport.pipeline import Runtime, run_day
from vaxreport.sources import writers
from vaxreport.synthetic.generate import _products
from vaxreport.synthetic.seed import generate_into

pytestmark = [pytest.mark.integration, pytest.mark.slow]
START = date(2026, 10, 5)
SRC = "vaxreport_source_embedded"


def touch(rt: Runtime, post_id: str, on: date, **values) -> None:
    sets = ", ".join(f"{k} = :{k}" for k in values)
    with rt.engine(SRC).begin() as conn:
        conn.execute(
            sa.text(f"UPDATE journalexport SET {sets}, andrad = :u WHERE post_id = :r"),
            {**values, "u": f"{on} 11:00:00", "r": post_id},
        )


def good_batch(name: str, avoid: str | None = None) -> str:
    product = next(p for p in _products()["in_scope"] if p["name"] == name)
    return next(b for b in product["batches"] if b != avoid)


def source_rows(rt: Runtime) -> dict[str, dict]:
    with rt.engine(SRC).connect() as conn:
        return {r["post_id"]: dict(r) for r in conn.execute(sa.text("SELECT * FROM journalexport")).mappings()}


def history(rt: Runtime, record_id: str) -> list[tuple[str, str | None]]:
    rv = s.record_versions
    with rt.ledger().connect() as conn:
        rows = conn.execute(
            sa.select(rv.c.state, rv.c.code).where(rv.c.source_record_id == record_id).order_by(rv.c.id)
        )
        return [tuple(r) for r in rows]


def test_days_of_changes_leave_the_register_equal_to_the_journal(embedded, emulator):
    rt = Runtime()
    days = [START + timedelta(days=i) for i in range(4)]
    truth: dict[str, tuple[str, str | None]] = {}
    for day in days:
        generate_into(rt, SRC, day, records=250, seed=8, defect_rate=0.15)
        truth.update(writers.ground_truth(rt.engine(SRC), day))

    run_day(rt, days[0])
    day1 = {rid: t for rid, t in truth.items() if rid.startswith(f"LEG-{days[0]:%Y%m%d}")}
    accepted1 = sorted(rid for rid, (state, _) in day1.items() if state == "accepted")
    fixable = sorted(rid for rid, (_, code) in day1.items() if code in {"BATCH-MISSING", "BATCH-MISMATCH"})
    assert len(accepted1) > 20
    assert len(fixable) >= 2
    rows = source_rows(rt)

    # day 2: care units fix rejected records, correct a batch, void two; the day's own records too
    for rid in fixable:
        touch(rt, rid, days[1], satsnummer=good_batch(rows[rid]["vaccin"]))
    corrected, voided = accepted1[:3], accepted1[3:5]
    for rid in corrected:
        touch(rt, rid, days[1], satsnummer=good_batch(rows[rid]["vaccin"], avoid=rows[rid]["satsnummer"]))
    for rid in voided:
        touch(rt, rid, days[1], makulerad="J")
    run_day(Runtime(), days[1])

    # day 3: a correction taken back to what it was first (A -> B -> A), and a void of a correction
    touch(rt, corrected[0], days[2], satsnummer=rows[corrected[0]]["satsnummer"])
    touch(rt, corrected[1], days[2], makulerad="J")
    run_day(Runtime(), days[2])
    run_day(Runtime(), days[3])

    # the register equals the journal: valid, not voided, latest content, each once
    final = source_rows(rt)
    gone = {*voided, corrected[1]}
    expected = {rid for rid, (state, _) in truth.items() if state == "accepted"} - gone | set(fixable)
    held = [i for i in emulator.immunizations() if not i["deleted"]]
    assert sorted(i["identifier_value"] for i in held) == sorted(expected)
    assert {i["identifier_value"]: i["lot"] for i in held} == {rid: final[rid]["satsnummer"] for rid in expected}

    # and the ledger explains every step
    for rid in fixable:
        assert history(rt, rid) == [("superseded", day1[rid][1]), ("accepted", None)]
    assert history(rt, corrected[0]) == [("accepted", None), ("superseded", None)]  # the first version is current again
    assert history(rt, corrected[1]) == [("superseded", None), ("superseded", None), ("accepted", "DELETED")]
    assert history(rt, corrected[2]) == [("superseded", None), ("accepted", None)]
    for rid in voided:
        assert history(rt, rid) == [("superseded", None), ("accepted", "DELETED")]
    late = [rid for rid, row in final.items() if row["vaccinationsdatum"] < row["registrerad"][:10]]
    assert late  # late registrations were part of it
