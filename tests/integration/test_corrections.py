"""A record changed or voided in the journal after the register accepted it."""

import json
from datetime import date

import pytest
import sqlalchemy as sa
from tests.servers import postgres_database

from vaxreport.pipeline import Runtime, run_day
from vaxreport.sources import embedded as source
from vaxreport.synthetic.generate import generate_day

pytestmark = pytest.mark.integration
DAY, LATER = date(2026, 11, 10), date(2026, 11, 12)


def _touch(rt: Runtime, record_id: str, on: date, **values) -> None:
    """Change a legacy-export row the way the journal would: new content, a new change time on `on`."""
    stamp = f"{on.isoformat()} 09:00:00"  # local time, as the export keeps it
    sets = ", ".join(f"{k} = :{k}" for k in values)
    with rt.engine("vaxreport_source_embedded").begin() as conn:
        conn.execute(
            sa.text(f"UPDATE journalexport SET {sets}, andrad = :u WHERE post_id = :r"),
            {**values, "u": stamp, "r": record_id},
        )


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request, embedded, monkeypatch):
    """Both ledgers: on PostgreSQL a day's chunks are validated and bundled in one write."""
    if request.param == "sqlite":
        yield request.param
        return
    with postgres_database() as conn:
        monkeypatch.setenv("AIRFLOW_CONN_VAXREPORT_DB", json.dumps(conn))
        yield request.param


def test_a_correction_updates_and_a_void_deletes_at_the_register(ledger, emulator):
    rt = Runtime()
    assert rt.ledger().dialect.name == ledger
    records = generate_day(DAY, records=200, seed=6, defect_rate=0.0, out_of_scope_rate=0.0)
    source.write_day(rt.engine("vaxreport_source_embedded"), records, DAY)
    first = run_day(rt, DAY)
    assert first["accepted"] == len(records)
    held = {(i["identifier_value"]): i for i in emulator.immunizations() if not i["deleted"]}

    fixed, voided = records[0], records[1]
    from vaxreport.synthetic.generate import _products

    product = next(p for p in _products()["in_scope"] if p["npl_id"] == fixed.npl_id)
    other_batch = next(b for b in product["batches"] if b != fixed.batch)
    _touch(rt, fixed.record_id, LATER, satsnummer=fixed.batch)  # same content, new change time: nothing to send
    _touch(rt, voided.record_id, LATER, makulerad="J")
    later = run_day(Runtime(), LATER)
    assert later["sent"] == 1
    assert later["accepted"] == 1
    assert later["extracted"] == 1

    store = {i["identifier_value"]: i for i in emulator.immunizations()}
    assert store[voided.record_id]["deleted"] is True
    assert emulator.stats()["immunizations"] == len(records) - 1

    # a real correction of the batch: sent as an update of the same register id, not a new record
    _touch(rt, fixed.record_id, date(2026, 11, 13), satsnummer=other_batch)
    again = run_day(Runtime(), date(2026, 11, 13))
    assert again["sent"] == 1
    now = {i["identifier_value"]: i for i in emulator.immunizations() if not i["deleted"]}
    assert now[fixed.record_id]["id"] == held[fixed.record_id]["id"]
    assert now[fixed.record_id]["version"] == held[fixed.record_id]["version"] + 1
    assert now[fixed.record_id]["lot"] == other_batch
    assert emulator.stats()["immunizations"] == len(records) - 1

    with rt.ledger().connect() as conn:
        states = conn.execute(
            sa.text("SELECT state, code FROM record_versions WHERE source_record_id = :r ORDER BY id"),
            {"r": voided.record_id},
        ).all()
    assert [tuple(s) for s in states] == [("superseded", None), ("accepted", "DELETED")]
    with rt.ledger().connect() as conn:
        fixed_states = (
            conn.execute(
                sa.text("SELECT state FROM record_versions WHERE source_record_id = :r ORDER BY id"),
                {"r": fixed.record_id},
            )
            .scalars()
            .all()
        )
    assert fixed_states == ["superseded", "accepted"]
