"""The ledger on a real PostgreSQL server: the bulk paths (COPY into staging tables, UPDATE ... FROM)
give the same states as SQLite's, and text survives COPY's escaping byte for byte."""

import itertools
import json
import os

import pytest
import sqlalchemy as sa
from tests.integration.test_daily_pipeline import DAY, TERMINAL, ledger_states, seed
from tests.servers import postgres_database

from vaxreport.ledger import schema as s
from vaxreport.ledger import store
from vaxreport.pipeline import Runtime, run_day

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_ledger(embedded, monkeypatch):
    with postgres_database() as conn:
        monkeypatch.setenv("AIRFLOW_CONN_VAXREPORT_DB", json.dumps(conn))
        yield conn


def test_a_day_on_a_postgresql_ledger_ends_in_ground_truth_and_a_rerun_sends_nothing(pg_ledger, emulator):
    rt = Runtime()
    assert rt.ledger().dialect.name == "postgresql"
    truth = seed(rt, 1500)
    first = run_day(rt, DAY)
    states = ledger_states(rt)
    assert states.keys() == truth.keys()
    assert {rid: (states[rid], truth[rid]) for rid in truth if states[rid] != truth[rid]} == {}
    assert first["pending"] == 0
    assert first["failed"] == 0
    assert emulator.stats()["immunizations"] == first["accepted"]

    again = run_day(Runtime(), DAY)
    assert again["sent"] == 0
    assert {k: again[k] for k in TERMINAL} == {k: first[k] for k in TERMINAL}
    assert emulator.stats()["immunizations"] == first["accepted"]


AWKWARD = "Vårdcentral\tÖst \\ Norr\nrad två\r, \\N och 'citat' \"dubbla\""


@pytest.mark.parametrize("unnest_max", [store.UNNEST_MAX, 0], ids=["arrays", "copy"])
def test_copy_keeps_awkward_text_nulls_and_counts(pg_ledger, monkeypatch, unnest_max):
    """Both bulk update paths: array parameters (a bundle's outcomes) and COPY into a stage."""
    monkeypatch.setattr(store, "UNNEST_MAX", unnest_max)
    rt = Runtime()
    ledger = rt.ledger()
    record = {
        "source": "urn:test",
        "source_record_id": "R1",
        "person_id": "201401012396",
        "vaccine_name": None,
        "npl_id": "20990101000061",
        "batch": "\\",
        "dose_number": 2,
        "vaccination_date": "2026-11-21",
        "caregiver_hsa_id": "SE2321000016-0001",
        "caregiver_name": "",
        "care_unit_hsa_id": "SE2321000016-BVC1",
        "care_unit_name": AWKWARD,
        "record_status": "completed",
        "registered_at": "2026-11-21 08:00:00",
    }
    others = [{**record, "source_record_id": f"R{i}"} for i in range(2, 12)]
    assert store.record_extracted(ledger, [record, *others], "2026-11-21") == {"extracted": 11, "new_versions": 11}
    assert store.record_extracted(ledger, [record, *others], "2026-11-21") == {"extracted": 11, "new_versions": 0}
    rv = s.record_versions
    with ledger.connect() as conn:
        row = conn.execute(sa.select(rv).where(rv.c.source_record_id == "R1")).mappings().one()
    assert row["care_unit_name"] == AWKWARD
    assert row["batch"] == "\\"
    assert row["vaccine_name"] is None
    assert row["caregiver_name"] == ""
    assert row["dose_number"] == 2

    # outcomes in bulk: grouped by the fields they set, only from the named states
    ids = [r["id"] for r in store.rows_in_state(ledger, "2026-11-21", ["extracted"])]
    outcomes = [{"id": i, "state": "rejected_local", "code": "X", "reason_sv": AWKWARD} for i in ids[:3]]
    outcomes += [{"id": i, "state": "ready", "npl_id": "20990101000061"} for i in ids[3:]]
    assert store.set_outcomes(ledger, outcomes, from_states=["extracted"]) == 11
    assert store.set_outcomes(ledger, outcomes, from_states=["extracted"]) == 0
    counts = store.state_counts(ledger, "2026-11-21")
    assert (counts["rejected_local"], counts["ready"]) == (3, 8)
    with ledger.connect() as conn:
        texts = conn.execute(sa.select(rv.c.reason_sv).where(rv.c.state == "rejected_local")).scalars().all()
    assert texts == [AWKWARD] * 3


def test_small_chunks_and_pages_give_the_same_states(pg_ledger, emulator, monkeypatch):
    """Validation in person-aligned chunks and bundling from a streamed cursor, many of each."""
    from vaxreport import pipeline

    monkeypatch.setattr(pipeline, "VALIDATE_CHUNK", 97)
    monkeypatch.setattr(pipeline, "BUILD_PAGE", 61)
    monkeypatch.setattr(pipeline, "BUNDLES_PER_WRITE", 3)
    rt = Runtime()
    truth = seed(rt, 800, seed_=5)
    pipeline.extract_day(rt, DAY)
    chunks = [[r["person_key"] for r in rows] for rows in pipeline.person_chunks(rt.ledger(), DAY)]
    assert len(chunks) > 5
    assert all(len(c) >= 97 for c in chunks[:-1])
    assert sum(map(len, chunks)) == 800
    assert [k for a, b in itertools.pairwise(chunks) for k in set(a) & set(b)] == []  # no person split
    summary = run_day(rt, DAY)
    states = ledger_states(rt)
    assert {rid: (states[rid], truth[rid]) for rid in truth if states[rid] != truth[rid]} == {}
    assert summary["pending"] == 0
    rv, bt = s.record_versions, s.bundles
    with rt.ledger().connect() as conn:
        sizes = conn.execute(sa.select(bt.c.entries)).scalars().all()
        per_bundle = conn.execute(
            sa.select(rv.c.bundle_id, sa.func.count(sa.distinct(rv.c.person_key)), sa.func.count())
            .where(rv.c.bundle_id.is_not(None))
            .group_by(rv.c.bundle_id)
        ).all()
    assert max(sizes) <= 100
    assert sum(n for _, _, n in per_bundle) == summary["sent"]
    assert persons_split_over_bundles(rt) == []  # a person's records travel in one bundle


def persons_split_over_bundles(rt: Runtime) -> list:
    rv = s.record_versions
    with rt.ledger().connect() as conn:
        return conn.execute(
            sa.select(rv.c.person_key)
            .where(rv.c.bundle_id.is_not(None))
            .group_by(rv.c.person_key)
            .having(sa.func.count(sa.distinct(rv.c.bundle_id)) > 1)
        ).all()


def test_ready_rows_a_dead_run_left_unbundled_join_their_persons_new_rows(pg_ledger, emulator, monkeypatch):
    """On PostgreSQL a chunk is validated and bundled in one write (`stream_day`); ready rows an
    earlier run validated but never bundled are bundled with the same person's new rows."""
    from vaxreport import pipeline

    monkeypatch.setattr(pipeline, "VALIDATE_CHUNK", 97)
    rt = Runtime()
    truth = seed(rt, 800, seed_=7)
    pipeline.extract_day(rt, DAY)
    pipeline.validate_day(rt, DAY)  # a run validated the day and died before bundling ...
    rv = s.record_versions
    with rt.ledger().begin() as conn:
        ready = conn.execute(
            sa.select(rv.c.id, rv.c.person_key).where(rv.c.state == "ready").order_by(rv.c.person_key, rv.c.id)
        ).all()
        first_of: dict[str, int] = {}
        for row_id, person in ready:
            first_of.setdefault(person, row_id)
        later = [row_id for row_id, person in ready if first_of[person] != row_id]
        # ... and of a person's several records, only the first had been validated
        conn.execute(sa.update(rv).where(rv.c.id.in_(later)).values(state="extracted"))
    assert later  # persons with both a left-over ready row and a row still to validate exist

    summary = run_day(rt, DAY)
    states = ledger_states(rt)
    assert {rid: (states[rid], truth[rid]) for rid in truth if states[rid] != truth[rid]} == {}
    assert summary["pending"] == 0
    assert persons_split_over_bundles(rt) == []
    assert emulator.stats()["immunizations"] == summary["accepted"]


def test_a_retired_index_is_dropped_concurrently_and_waits_for_no_reader_too_long(pg_ledger):
    engine = sa.create_engine(
        sa.URL.create("postgresql+psycopg2", username="postgres", host="127.0.0.1", database=pg_ledger["schema"])
    )
    try:
        s.ensure_schema(engine)
        with engine.begin() as conn:  # a ledger made before the person index took the product
            conn.exec_driver_sql("CREATE INDEX ix_record_versions_person_key ON record_versions (person_key)")
        # a reader holding the table (a running task's open cursor) keeps the drop from finishing
        reader = engine.connect()
        reader.exec_driver_sql("BEGIN")
        reader.exec_driver_sql("LOCK TABLE record_versions IN ACCESS SHARE MODE")
        s.ensure_schema(engine)  # gives up after its lock timeout instead of queueing everyone behind it
        names = {i["name"] for i in sa.inspect(engine).get_indexes("record_versions")}
        assert "ix_record_versions_person_key" in names
        reader.rollback()
        reader.close()
        s.ensure_schema(engine)
        names = {i["name"] for i in sa.inspect(engine).get_indexes("record_versions")}
        assert "ix_record_versions_person_key" not in names
        assert "ix_record_versions_person_npl" in names
        with engine.connect() as conn:  # and the pooled connection kept no lock timeout
            assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "0"
    finally:
        engine.dispose()


def test_a_run_with_eight_bundles_in_flight_keeps_its_ledger_connections(pg_ledger, emulator, monkeypatch):
    """Each sending thread checks a connection out per bundle; the pool keeps every one it opened,
    so no server session is closed mid-run to be opened again for the next bundle."""
    register = json.loads(os.environ["AIRFLOW_CONN_NVR_API"])
    monkeypatch.setenv("AIRFLOW_CONN_NVR_API", json.dumps({**register, "extra": {"concurrency": 8}}))
    rt = Runtime()
    truth = seed(rt, 3000, seed_=11)
    events = {"connect": 0, "close": 0}
    for name in events:
        sa.event.listen(rt.ledger(), name, lambda *_, name=name: events.__setitem__(name, events[name] + 1))
    summary = run_day(rt, DAY)
    states = ledger_states(rt)
    assert {rid: (states[rid], truth[rid]) for rid in truth if states[rid] != truth[rid]} == {}
    assert summary["sent"] > 1500  # dozens of bundles, eight at a time
    assert events["connect"] > 1  # threads sent side by side
    assert events["close"] == 0
