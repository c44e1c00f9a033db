"""Ledger tables (SQLAlchemy Core), the same on SQLite and PostgreSQL."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.schema import CreateIndex

log = logging.getLogger(__name__)

metadata = sa.MetaData()

# States a record version moves through; see DESIGN.md "The ledger".
EXTRACTED = "extracted"
EXCLUDED = "excluded"
REJECTED_LOCAL = "rejected_local"
READY = "ready"
SUBMITTED = "submitted"
ACCEPTED = "accepted"
DUPLICATE = "duplicate"
REJECTED_REGISTER = "rejected_register"
FAILED = "failed"
SUPERSEDED = "superseded"
STATES = (
    EXTRACTED,
    EXCLUDED,
    REJECTED_LOCAL,
    READY,
    SUBMITTED,
    ACCEPTED,
    DUPLICATE,
    REJECTED_REGISTER,
    FAILED,
    SUPERSEDED,
)
# States that still need work from a later step or run.
OPEN_STATES = (EXTRACTED, READY, SUBMITTED, FAILED)

# Journal-supplied values are Text: an over-long value in one row must not fail a whole insert.
record_versions = sa.Table(
    "record_versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("source_record_id", sa.String(200), nullable=False),
    sa.Column("version_hash", sa.String(64), nullable=False),
    sa.Column("window_day", sa.String(10), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("code", sa.String(40)),
    sa.Column("reason_sv", sa.Text),
    sa.Column("reason_en", sa.Text),
    sa.Column("person_id", sa.Text, nullable=False),  # personal data: never logged
    sa.Column("person_key", sa.String(16), nullable=False),  # keyed hash, safe to show
    sa.Column("vaccine_name", sa.Text),
    sa.Column("npl_id", sa.Text),
    sa.Column("batch", sa.Text),
    sa.Column("dose_number", sa.Integer),
    sa.Column("vaccination_date", sa.Text),
    sa.Column("caregiver_hsa_id", sa.Text),
    sa.Column("caregiver_name", sa.Text),
    sa.Column("care_unit_hsa_id", sa.Text),
    sa.Column("care_unit_name", sa.Text),
    sa.Column("record_status", sa.String(20), nullable=False),
    sa.Column("registered_at", sa.Text),
    sa.Column("source_problem", sa.Text),  # why the journal row could not be read (no values)
    sa.Column("register_id", sa.String(64)),
    sa.Column("bundle_id", sa.Integer),
    sa.Column("first_seen_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
    sa.UniqueConstraint("source", "source_record_id", "version_hash", name="uq_record_version"),
    sa.Index("ix_record_versions_window_state", "window_day", "state"),
    # a person's rows (chunks, bundles) and their doses of some products (the interval rule's
    # history: by person alone it would fetch every dose of those persons to keep a few)
    sa.Index("ix_record_versions_person_npl", "person_key", "npl_id"),
    sa.Index("ix_record_versions_bundle", "bundle_id"),  # a bundle's rows: claimed, read, answered
)

bundles = sa.Table(
    "bundles",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("window_day", sa.String(10), nullable=False),
    sa.Column("bundle_uuid", sa.String(36), nullable=False),
    sa.Column("entries", sa.Integer, nullable=False),
    sa.Column("state", sa.String(20), nullable=False),  # built -> sending -> answered | failed
    sa.Column("claimed_at", sa.String(32)),
    sa.Column("context_id", sa.String(64)),
    sa.Column("request_id", sa.String(36)),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("answered_at", sa.String(32)),
    sa.Index("ix_bundles_window_state", "window_day", "state"),
)

catalog_products = sa.Table(
    "catalog_products",
    metadata,
    sa.Column("npl_id", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("programme", sa.String(40), nullable=False),
    sa.Column("fetched_at", sa.String(32), nullable=False),
)

catalog_batches = sa.Table(
    "catalog_batches",
    metadata,
    sa.Column("npl_id", sa.String(40), primary_key=True),
    sa.Column("lot", sa.String(120), primary_key=True),
)


# Monthly reconciliation results (counts only), kept for the 12-month trend.
reconciliations = sa.Table(
    "reconciliations",
    metadata,
    sa.Column("month", sa.String(7), nullable=False),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("caregiver_hsa_id", sa.Text, nullable=False),
    sa.Column("care_unit_hsa_id", sa.Text, nullable=False),
    sa.Column("vaccine", sa.Text, nullable=False),
    sa.Column("klass", sa.String(30), nullable=False),
    sa.Column("records", sa.Integer, nullable=False),
    sa.Column("reconciled_at", sa.String(32), nullable=False),
    sa.Index("ix_reconciliations_month", "month"),
)


# indexes a newer one serves instead, dropped from ledgers made before it (each costs every write)
RETIRED_INDEXES = {"record_versions": ("ix_record_versions_person_key",)}


def ensure_schema(engine: sa.Engine) -> None:
    """Create what is missing, indexes added since a ledger was made included (create_all alone
    adds indexes only with their table), and drop the retired ones."""
    metadata.create_all(engine)
    inspector = sa.inspect(engine)
    for table in metadata.sorted_tables:
        present = {i["name"] for i in inspector.get_indexes(table.name)}
        # only a missing index is created: CREATE INDEX locks out the table's writers even when
        # IF NOT EXISTS finds it there, and every task of every run passes through here
        for index in (i for i in table.indexes if i.name not in present):
            try:
                with engine.begin() as conn:
                    conn.execute(CreateIndex(index, if_not_exists=True))
            except sa.exc.DBAPIError:
                # two workers starting together on an older ledger: the other one made it
                if index.name not in {i["name"] for i in sa.inspect(engine).get_indexes(table.name)}:
                    raise
        for name in (n for n in RETIRED_INDEXES.get(table.name, ()) if n in present):
            _drop_retired(engine, name)


def _drop_retired(engine: sa.Engine, name: str) -> None:
    """Drop an index a newer one replaced. On PostgreSQL concurrently and giving up after 5 s of
    waiting for a lock: a plain DROP INDEX would wait behind a running task's open cursor and hold
    every later query of the ledger behind it. A drop that gives up is tried again next time."""
    if engine.dialect.name != "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
        return
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("SET lock_timeout = '5s'")
            try:
                conn.exec_driver_sql(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            finally:  # the connection goes back to the pool: no timeout for whoever takes it next
                conn.exec_driver_sql("RESET lock_timeout")
    except sa.exc.DBAPIError as exc:
        log.warning("retired index %s not dropped yet (%s); the next run tries again", name, type(exc).__name__)
