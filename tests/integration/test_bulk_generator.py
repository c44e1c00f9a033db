"""The benchmark's bulk generator on real PostgreSQL: what it writes into a vaccination-journal
source, the pipeline extracts whole and classifies exactly as the generator says it meant it."""

from __future__ import annotations

import time
from datetime import date

import pytest
import sqlalchemy as sa
from tests.servers import postgres_database

from nvr_emulator.catalog import load_catalog, medication_resource
from vaxreport import pipeline
from vaxreport.ledger import schema as s
from vaxreport.ledger import store
from vaxreport.registry import catalog as cat
from vaxreport.settings import ConnectionInfo
from vaxreport.sources import writers
from vaxreport.synthetic.bulk import DEFAULT_PREFIX, write_bulk_day

pytestmark = pytest.mark.integration

DAY = date(2026, 11, 21)
RECORDS = 20_000
SOURCE = "vaxreport_source_bulk"


@pytest.fixture
def runtime():
    """A PostgreSQL source and a PostgreSQL ledger, each a fresh database, and the register's
    catalog as the emulator serves it, stored in the ledger."""
    with postgres_database() as source, postgres_database() as ledger:
        connections = {
            SOURCE: ConnectionInfo(conn_id=SOURCE, **source, extra={"kind": "vaccination_journal"}),
            "vaxreport_db": ConnectionInfo(conn_id="vaxreport_db", **ledger),
        }
        rt = pipeline.Runtime(resolve=connections.__getitem__, sources=[SOURCE])
        served = [cat.parse_medication(medication_resource(p)) for p in load_catalog().products]
        cat.store(rt.ledger(), [p for p in served if p is not None])
        yield rt
        rt.close()


def test_a_bulk_day_is_extracted_whole_and_validated_as_the_generator_intended(runtime):
    rt = runtime
    started = time.perf_counter()
    written = write_bulk_day(rt.engine(SOURCE), DAY, RECORDS, seed=3)
    generate_s = time.perf_counter() - started
    assert written.rows == RECORDS
    assert sum(written.outcomes.values()) == RECORDS
    # the declared mix: about 96 % valid new, 2 % corrections, 1 % voids, 1 % defects
    assert written.outcomes["none"] > 0.94 * RECORDS
    for label, share in (("correction", 0.02), ("void", 0.01)):
        assert 0.5 * share * RECORDS < written.outcomes[label] < 1.5 * share * RECORDS
    assert 0.5 * 0.01 * RECORDS < written.expected_after_validation()["rejected_local"] < 1.5 * 0.01 * RECORDS
    assert generate_s < 10, f"{RECORDS:,} rows took {generate_s:.1f} s"

    extracted = pipeline.extract_source(rt, SOURCE, DAY)
    assert (extracted["extracted"], extracted["new_versions"]) == (RECORDS, RECORDS)
    pipeline.validate_day(rt, DAY)

    ledger = rt.ledger()
    counts = {state: n for state, n in store.state_counts(ledger, DAY.isoformat()).items() if n}
    assert counts == written.expected_after_validation()
    rv = s.record_versions
    with ledger.connect() as conn:
        rows = conn.execute(
            sa.select(rv.c.source_record_id, rv.c.state, rv.c.code).where(rv.c.window_day == DAY.isoformat())
        ).all()
        codes = dict(
            conn.execute(
                sa.select(rv.c.code, sa.func.count())
                .where(rv.c.window_day == DAY.isoformat(), rv.c.state == s.REJECTED_LOCAL)
                .group_by(rv.c.code)
            ).all()
        )
        # the register's key among the records it will be sent: person + vaccine + date, never twice
        key = (rv.c.person_key, rv.c.npl_id, rv.c.vaccination_date)
        ready = rv.c.state == s.READY
        sendable = sa.and_(ready, rv.c.record_status == "completed")
        doubled = conn.execute(
            sa.select(*key).where(sendable).group_by(*key).having(sa.func.count() > 1).limit(5)
        ).all()
        covid = [p.npl_id for p in cat.load(ledger).products.values() if p.programme == "covid19"]
        two_covid = conn.execute(
            sa.select(rv.c.person_key)
            .where(ready, rv.c.npl_id.in_(covid))
            .group_by(rv.c.person_key)
            .having(sa.func.count() > 1)
            .limit(5)
        ).all()
    assert codes == written.expected_codes()
    assert "OUT-OF-SCOPE" not in codes
    assert doubled == []
    assert two_covid == []

    # record by record against the ground truth: after validation a record meant for the register
    # (accepted, or excluded as VOIDED once bundling finds it never got there) is ready
    truth = writers.ground_truth(rt.engine(SOURCE), DAY)
    assert len(truth) == RECORDS
    assert all(rid.startswith(f"{DEFAULT_PREFIX}-{DAY:%Y%m%d}-") for rid in truth)
    validated = {
        rid: (state, code)
        for rid, (state, code) in (
            (rid, (s.READY, None) if state in {"accepted", "excluded"} else (state, code))
            for rid, (state, code) in truth.items()
        )
    }
    seen = {rid: (state, code) for rid, state, code in rows}
    assert {rid: (seen.get(rid), want) for rid, want in validated.items() if seen.get(rid) != want} == {}

    # bundling: the voids never reached the register, so they end excluded (VOIDED), not sent
    pipeline.build_day(rt, DAY)
    after = {state: n for state, n in store.state_counts(ledger, DAY.isoformat()).items() if n}
    assert after[s.EXCLUDED] == written.outcomes["void"]
    with ledger.connect() as conn:
        voided = conn.execute(
            sa.select(sa.func.count()).where(rv.c.window_day == DAY.isoformat(), rv.c.code == "VOIDED")
        ).scalar_one()
    assert voided == written.outcomes["void"]


def test_writing_the_same_day_again_replaces_it(runtime):
    engine = runtime.engine(SOURCE)
    first = write_bulk_day(engine, DAY, 3_000, seed=5)
    again = write_bulk_day(engine, DAY, 3_000, seed=5)
    assert first.outcomes == again.outcomes
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM vaccinations")).scalar_one() == 3_000
        assert conn.execute(sa.text("SELECT count(*) FROM vaxreport_ground_truth")).scalar_one() == 3_000
