"""`vaxreport bench` on a small day, for real: PostgreSQL source and ledger, the emulator, the
pipeline and each stage alone in processes of their own. Not a timed test: it checks that the
benchmark accounts for every record and that each stage alone saw the records it claims to time."""

from __future__ import annotations

import uuid
from datetime import date

import pytest
import sqlalchemy as sa
from tests.servers import postgres_database

from vaxreport import benchmark
from vaxreport.ledger import schema as s

pytestmark = pytest.mark.integration

DAY = date(2026, 11, 21)
RECORDS = 3000


@pytest.fixture
def settings(tmp_path):
    with postgres_database():  # skips (or fails under .ci/run) without a PostgreSQL server
        pass
    prefix = f"vx_test_bench_{uuid.uuid4().hex[:8]}"
    yield benchmark.BenchSettings(sizes=(RECORDS,), db_prefix=prefix, latency_ms=0, workdir=tmp_path)
    admin = sa.create_engine("postgresql+psycopg2://postgres@127.0.0.1/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in (f"{prefix}_source", f"{prefix}_ledger", f"{prefix}_scratch"):
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def test_the_benchmark_accounts_for_every_record_and_times_each_stage_on_all_of_them(settings, capsys):
    result = benchmark.bench_size(settings, RECORDS, DAY)

    counts = result["counts"]
    assert result["accounted"], counts
    assert result["extracted"] == RECORDS
    assert result["register_held"] == counts[s.ACCEPTED]
    assert counts[s.ACCEPTED] > 0.9 * RECORDS
    assert result["peak_rss_mb"] > 0
    assert all(result["timings"][stage] > 0 for stage in ("extract", "validate", "build", "submit", "total"))

    alone = result["alone"]
    live = sum(counts.values()) - counts[s.SUPERSEDED]
    assert alone["validate"]["rows"] == live == RECORDS
    # the rules see every row but the out-of-scope, unreadable and voided ones
    assert counts[s.ACCEPTED] <= alone["validate"]["rules_rows"] < RECORDS
    # every bundled record is serialised again, once, and an entry is well over 500 bytes of JSON
    ledger_db = sa.create_engine(f"postgresql+psycopg2://postgres@127.0.0.1/{settings.ledger_db}")
    with ledger_db.connect() as conn:
        bundled = conn.exec_driver_sql("SELECT count(*) FROM record_versions WHERE bundle_id IS NOT NULL").scalar()
    ledger_db.dispose()
    assert alone["build"]["records"] == bundled >= counts[s.ACCEPTED]
    assert alone["build"]["bytes"] > 500 * bundled
    ledger = alone["ledger"]
    versions = sum(counts.values())
    assert ledger["inserted"] == versions
    for write in ("insert", "update"):  # rows inserted and rows the update changed, all of them
        rows, _ = ledger[write]
        assert rows == versions

    benchmark.print_report([result], None, None, settings)
    report = capsys.readouterr().out
    first, alone_table = report.split("each stage alone")
    for stage in ("extract", "validate", "build", "submit", "ledger writes", "end to end"):
        assert f"{RECORDS:>10,} {stage}" in first
    for stage in ("validate", "  rules", "build", "ledger writes", "  insert", "  update"):
        assert f"{RECORDS:>10,} {stage}" in alone_table
    assert "validation's setup" in alone_table
