"""Ledger writes are upserts and guarded updates: repeating one changes nothing."""

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from vaxreport.ledger import schema as s
from vaxreport.ledger import store

pytestmark = pytest.mark.unit

RECORD = {
    "source": "urn:test",
    "source_record_id": "R1",
    "person_id": "201401012396",
    "vaccine_name": "Priorix",
    "npl_id": "20990101000061",
    "batch": "A71CB401",
    "dose_number": None,
    "vaccination_date": "2026-11-21",
    "caregiver_hsa_id": "SE2321000016-0001",
    "caregiver_name": "Region",
    "care_unit_hsa_id": "SE2321000016-BVC1",
    "care_unit_name": "BVC",
    "record_status": "completed",
    "registered_at": "2026-11-21 08:00:00",
}


@pytest.fixture
def ledger(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    s.ensure_schema(engine)
    return engine


def test_the_same_version_is_recorded_once(ledger):
    assert store.record_extracted(ledger, [RECORD], "2026-11-21") == {"extracted": 1, "new_versions": 1}
    assert store.record_extracted(ledger, [RECORD], "2026-11-21") == {"extracted": 1, "new_versions": 0}
    assert store.state_counts(ledger, "2026-11-21")["extracted"] == 1


def test_a_new_version_supersedes_an_unsent_one_but_not_a_sent_one(ledger):
    store.record_extracted(ledger, [RECORD], "2026-11-21")
    store.record_extracted(ledger, [{**RECORD, "batch": "A71CB402"}], "2026-11-21")
    counts = store.state_counts(ledger, "2026-11-21")
    assert (counts["superseded"], counts["extracted"]) == (1, 1)

    (row,) = store.rows_in_state(ledger, "2026-11-21", ["extracted"])
    store.set_outcomes(ledger, [{"id": row["id"], "state": "accepted"}], from_states=["extracted"])
    store.record_extracted(ledger, [{**RECORD, "batch": "A71CB403"}], "2026-11-21")
    counts = store.state_counts(ledger, "2026-11-21")
    assert (counts["accepted"], counts["extracted"]) == (1, 1)


@pytest.mark.parametrize("keys_given", [True, False], ids=["keys-given", "keys-looked-up"])
def test_an_accepted_version_supersedes_the_records_other_accepted_version_only(ledger, keys_given):
    """The sender hands in the (source, record id) it already holds; looked up or given, the same
    versions become history, and another record's accepted version is left alone."""
    other = {**RECORD, "source_record_id": "R2"}
    store.record_extracted(ledger, [RECORD, other], "2026-11-21")
    first = store.rows_in_state(ledger, "2026-11-21", ["extracted"])
    store.set_outcomes(ledger, [{"id": r["id"], "state": "accepted"} for r in first], from_states=["extracted"])
    store.record_extracted(ledger, [{**RECORD, "batch": "A71CB402"}], "2026-11-21")
    (newer,) = store.rows_in_state(ledger, "2026-11-21", ["extracted"])
    store.set_outcomes(ledger, [{"id": newer["id"], "state": "accepted"}], from_states=["extracted"])
    keys = [(newer["source"], newer["source_record_id"])] if keys_given else None
    with ledger.begin() as conn:
        assert store.supersede_replaced_in(conn, [newer["id"]], keys) == 1
    states = {
        (r["source_record_id"], r["batch"]): r["state"] for r in store.rows_in_state(ledger, "2026-11-21", s.STATES)
    }
    assert states == {("R1", "A71CB401"): "superseded", ("R2", "A71CB401"): "accepted", ("R1", "A71CB402"): "accepted"}


def test_outcomes_only_move_rows_from_the_named_states(ledger):
    store.record_extracted(ledger, [RECORD], "2026-11-21")
    (row,) = store.rows_in_state(ledger, "2026-11-21", ["extracted"])
    assert store.set_outcomes(ledger, [{"id": row["id"], "state": "accepted"}], from_states=["submitted"]) == 0
    assert store.set_outcomes(ledger, [{"id": row["id"], "state": "ready"}], from_states=["extracted"]) == 1
    assert store.state_counts(ledger, "2026-11-21")["ready"] == 1


def test_person_id_is_kept_but_its_key_is_a_hash(ledger):
    store.record_extracted(ledger, [RECORD], "2026-11-21")
    (row,) = store.rows_in_state(ledger, "2026-11-21", ["extracted"])
    assert row["person_id"] == RECORD["person_id"]
    assert len(row["person_key"]) == 16
    assert RECORD["person_id"] not in row["person_key"]


@given(
    st.lists(
        st.one_of(st.none(), st.text(), st.integers(), st.sampled_from(["\\N", "a\tb", "x\\y", "\r\n", ""])),
        min_size=1,
        max_size=6,
    )
)
def test_copy_fast_path_writes_what_the_escaping_writes(values):
    columns = tuple(f"c{i}" for i in range(len(values)))
    row = dict(zip(columns, values, strict=True))
    assert store._copy_line(row, columns) == "\t".join(store._copy_text(v) for v in values)


def test_an_older_ledger_gets_the_indexes_added_since(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.sqlite'}")
    s.ensure_schema(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_record_versions_bundle")
    s.ensure_schema(engine)
    s.ensure_schema(engine)  # and again: nothing to do, no error
    names = {i["name"] for i in sa.inspect(engine).get_indexes("record_versions")}
    assert "ix_record_versions_bundle" in names


def test_an_older_ledger_loses_the_indexes_a_newer_one_replaced(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.sqlite'}")
    s.ensure_schema(engine)
    with engine.begin() as conn:  # as a ledger made before the person index took the product
        conn.exec_driver_sql("DROP INDEX ix_record_versions_person_npl")
        conn.exec_driver_sql("CREATE INDEX ix_record_versions_person_key ON record_versions (person_key)")
    s.ensure_schema(engine)
    s.ensure_schema(engine)
    names = {i["name"] for i in sa.inspect(engine).get_indexes("record_versions")}
    assert "ix_record_versions_person_npl" in names
    assert "ix_record_versions_person_key" not in names
