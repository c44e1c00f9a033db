"""The daily steps, one function each, shared by the Airflow DAG and `python -m vaxreport run-day`.

Each step reads its input from the ledger and writes its result there, so steps can be re-run
alone, in any run, without repeating work: extraction records only versions it has not seen,
validation only looks at `extracted` rows, bundling only at `ready` or `failed` ones, and
submission only at bundles that have no answer yet. Steps return counts, never records.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from vaxreport.fhir import bundles as fb
from vaxreport.ledger import schema as s
from vaxreport.ledger import store
from vaxreport.meters import VALIDATION
from vaxreport.registry import catalog as cat
from vaxreport.registry.client import RegistryClient, RegistryError, RegistryUnavailable
from vaxreport.registry.outcomes import scrub
from vaxreport.settings import (
    LEDGER_CONN_ID,
    REGISTRY_CONN_ID,
    ConnectionInfo,
    RegistrySettings,
    bundles_dir,
    connection_from_env,
    reports_dir,
    source_conn_ids,
    sqlalchemy_url,
)
from vaxreport.sources.extract import extract
from vaxreport.sources.mapping import Kind, load_kind
from vaxreport.submission import (  # submission's own module; these stay importable from here
    TRANSIENT_ROUNDS,  # noqa: F401
    _send_pending,
    claim_lease_minutes,  # noqa: F401
    submit_day,
)
from vaxreport.validation.reasons import reason
from vaxreport.validation.scope import is_out_of_scope
from vaxreport.window import day_window

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from datetime import date

log = logging.getLogger(__name__)

#: Connections an engine keeps open for reuse. A sending run has a thread per bundle in flight
#: (`RegistrySettings.concurrency`), its claim loop, the main thread and extraction's prefetch,
#: all on the ledger at once; with SQLAlchemy's default of 5, each connection beyond it was closed
#: on return and opened anew for the next bundle, a new server process every few bundles.
#: Opened only when needed, so a run that uses fewer keeps fewer.
POOL_SIZE = 16
SUMMARY_STATES = ("excluded", "rejected_local", "accepted", "duplicate", "rejected_register", "failed")


@dataclass
class Runtime:
    """Where things are for one run. Airflow passes its own connection resolver and secret masker."""

    resolve: Callable[[str], ConnectionInfo] = connection_from_env
    on_secret: Callable[[str], None] | None = None
    # one X-Context-ID per run; VAXREPORT_CONTEXT_ID lets a restarted CLI run resume its own claims
    context_id: str = field(default_factory=lambda: os.environ.get("VAXREPORT_CONTEXT_ID") or str(uuid.uuid4()))
    sources: list[str] = field(default_factory=source_conn_ids)
    _engines: dict[str, sa.Engine] = field(default_factory=dict, repr=False)

    def engine(self, conn_id: str) -> sa.Engine:
        if conn_id not in self._engines:
            conn = self.resolve(conn_id)
            url = sqlalchemy_url(conn)
            # hide_parameters: a database error must not print the personnummer it was writing
            if url.drivername == "sqlite":
                _private_file(Path(url.database))
                engine = sa.create_engine(url, connect_args={"timeout": 60}, hide_parameters=True)
                sa.event.listen(engine, "connect", _sqlite_connect)
                sa.event.listen(engine, "begin", _sqlite_begin)
            else:
                engine = sa.create_engine(
                    url, pool_pre_ping=True, hide_parameters=True, pool_size=POOL_SIZE, max_overflow=POOL_SIZE
                )
            self._engines[conn_id] = engine
        return self._engines[conn_id]

    def ledger(self) -> sa.Engine:
        engine = self.engine(LEDGER_CONN_ID)
        s.ensure_schema(engine)
        return engine

    def registry(self, parallel: int = 1) -> RegistryClient:
        """The register's client; `parallel`: one of that many workers sending at once, which
        keeps under its part of the rate (`RegistrySettings.divided`)."""
        settings = RegistrySettings.from_connection(self.resolve(REGISTRY_CONN_ID)).divided(parallel)
        if self.on_secret:
            self.on_secret(settings.client_secret)
        return RegistryClient(settings, context_id=self.context_id, on_token=self.on_secret)

    def close(self) -> None:
        for engine in self._engines.values():
            engine.dispose()


def source_kind(rt: Runtime, conn_id: str) -> tuple[Kind, str]:
    """A source connection's journal-system kind (extra `kind`) and identifier system URI."""
    extra = rt.resolve(conn_id).extra
    kind = load_kind(extra.get("kind", "legacy_export"))
    return kind, extra.get("system_uri", kind.system_uri)


def _private_file(path: Path) -> None:
    """SQLite files here hold personnummer (the ledger, journal extracts): owner-only, like the
    folder they live in. SQLite gives its -wal/-shm files the permissions of the database file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)


def _sqlite_connect(dbapi_connection, _record) -> None:
    """SQLite settings for several processes (Airflow tasks, concurrent runs) on one file.

    WAL lets readers and the writer proceed together; transactions are begun by `_sqlite_begin`
    (the driver's own implicit BEGIN is switched off), and a journal text in a broken encoding is
    read with replacement characters instead of failing the extraction.
    """
    dbapi_connection.isolation_level = None
    dbapi_connection.text_factory = lambda raw: raw.decode("utf-8", "replace")
    dbapi_connection.execute("PRAGMA journal_mode=WAL")
    dbapi_connection.execute("PRAGMA busy_timeout=60000")


def _sqlite_begin(conn: sa.Connection) -> None:
    """BEGIN IMMEDIATE takes the write lock up front: two transactions that read and then write
    would otherwise deadlock on the upgrade, and SQLite would fail one with 'database is locked'
    at once, whatever the busy timeout."""
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sharing_identifier_system(rt: Runtime, conn_id: str, system_uri: str) -> list[str]:
    """Other enabled sources with the same identifier system: their record ids would meet in the
    ledger (and the register) as versions of one record, and one would overwrite the other."""
    sharing = []
    for other in (c for c in rt.sources if c != conn_id):
        try:
            if source_kind(rt, other)[1] == system_uri:
                sharing.append(other)
        except Exception:  # noqa: S112 - a missing or broken connection: that source fails on its own
            continue
    return sharing


def extract_source(rt: Runtime, conn_id: str, day: date) -> dict:
    """Pull every record registered or changed on `day` from one source into the ledger."""
    kind, system_uri = source_kind(rt, conn_id)
    sharing = _sharing_identifier_system(rt, conn_id, system_uri)
    if sharing:
        raise ValueError(
            f"source {conn_id} shares the identifier system {system_uri} with {', '.join(sharing)}: "
            "set a distinct extra.system_uri on each installation of one journal-system kind"
        )
    records = extract(rt.engine(conn_id), kind, day_window(day), system_uri)
    counts = store.record_extracted(rt.ledger(), records, day.isoformat())
    log.info(
        "source %s (%s): %d records in window, %d new versions",
        conn_id,
        kind.name,
        counts["extracted"],
        counts["new_versions"],
    )
    return {"source": conn_id, **counts}


def extract_day(rt: Runtime, day: date) -> dict:
    """All enabled sources; a failing source is reported and the others still run."""
    totals = {"extracted": 0, "new_versions": 0, "sources": 0, "failed_sources": []}
    for conn_id in rt.sources:
        try:
            counts = extract_source(rt, conn_id, day)
        except Exception as exc:
            log.error("source %s failed: %s: %s", conn_id, type(exc).__name__, scrub(str(exc))[:300])
            totals["failed_sources"].append(conn_id)
            continue
        totals["extracted"] += counts["extracted"]
        totals["new_versions"] += counts["new_versions"]
        totals["sources"] += 1
    return totals


def refresh_catalog(rt: Runtime) -> int:
    """Fetch the register's vaccine catalog (all pages) into the pipeline database."""
    with rt.registry() as client:
        resources = client.catalog()
    products = [p for p in (cat.parse_medication(r) for r in resources) if p is not None]
    if not products:
        raise RegistryError("the register's vaccine catalog is empty; refusing to validate against it")
    n = cat.store(rt.ledger(), products)
    log.info("vaccine catalog refreshed: %d products", n)
    return n


def ensure_catalog(rt: Runtime, max_age_hours: float = 24.0) -> int:
    """Use the stored catalog while it is fresh; refresh it when older than `max_age_hours`
    (the register_vaccine_catalog DAG normally keeps it fresh). If the register cannot be reached,
    go on with the stored one: a down register must not stop validation; the submission step will
    meet the outage and mark what it could not send as failed.
    """
    age = cat.age_hours(rt.ledger())
    if age is not None and age < max_age_hours:
        return len(cat.load(rt.ledger()).products)
    try:
        return refresh_catalog(rt)
    except RegistryError as exc:
        stored = len(cat.load(rt.ledger()).products)
        if not stored:
            raise
        log.warning("catalog refresh failed (%s); validating against the stored catalog of %d products", exc, stored)
        return stored


def validate_day(rt: Runtime, day: date, dose_interval_days: int | None = None) -> dict:
    """Mark each extracted record excluded, rejected_local (with code and reason) or ready, a
    chunk at a time."""
    ledger = rt.ledger()
    catalog = cat.load(ledger)
    if not catalog.products:
        refresh_catalog(rt)
        catalog = cat.load(ledger)
    totals = {"validated": 0, "excluded": 0, "rejected_local": 0, "ready": 0}
    unexpected: Counter[str] = Counter()
    for rows in person_chunks(ledger, day):
        result = _validate_chunk(ledger, rows, catalog, day, dose_interval_days)
        for key in totals:
            totals[key] += result[key]
        unexpected.update(result["unexpected_by_code"])
    log.info(
        "validated %d: %d excluded, %d rejected locally, %d ready",
        totals["validated"],
        totals["excluded"],
        totals["rejected_local"],
        totals["ready"],
    )
    return {**totals, "unexpected_by_code": dict(unexpected)}


VALIDATE_CHUNK = 100_000  # rows; GX's cost per call (~0.1 s) is paid per chunk, memory grows with it
# what the rules read: the record's content but the names, and no hashes, stamps or reasons
VALIDATE_COLUMNS = (
    "id",
    "source",
    "source_record_id",
    "person_key",
    *(f for f in store.CONTENT_FIELDS if f not in ("caregiver_name", "care_unit_name")),
)


def stream_rows(ledger: sa.Engine, query: sa.Select, page: int) -> Iterator[list[dict]]:
    """A query's rows in pages. PostgreSQL streams them through a server-side cursor (memory stays
    flat however big the day); SQLite, the small embedded default, where an open reader would hold
    the write lock, reads them at once."""
    if ledger.dialect.name == "postgresql":
        with ledger.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=page).execute(query)
            for part in result.mappings().partitions(page):
                yield [dict(r) for r in part]
        return
    with ledger.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    for start in range(0, len(rows), page):
        yield rows[start : start + page]


def person_chunks(ledger: sa.Engine, day: date, states: tuple[str, ...] = (s.EXTRACTED,)) -> Iterator[list[dict]]:
    """The window's rows in `states` (to validate: the extracted ones) in chunks of about
    VALIDATE_CHUNK, a person's rows never split: the dose-interval rule compares a person's doses,
    so a chunk holds all of them."""
    rv = s.record_versions
    query = (
        sa.select(*(rv.c[c] for c in VALIDATE_COLUMNS))
        .where(rv.c.window_day <= day.isoformat(), rv.c.state.in_(states))
        .order_by(rv.c.person_key, rv.c.id)
    )
    chunk: list[dict] = []
    # read in small pages: a page as big as the chunk would be a second chunk's rows in memory
    for page in stream_rows(ledger, query, BUILD_PAGE):
        for row in page:
            if len(chunk) >= VALIDATE_CHUNK and row["person_key"] != chunk[-1]["person_key"]:
                yield chunk
                chunk = []
            chunk.append(row)
    if chunk:
        yield chunk


def _validate_chunk(ledger: sa.Engine, rows: list[dict], catalog, day: date, dose_interval_days: int | None) -> dict:
    outcomes, summary = chunk_outcomes(ledger, rows, catalog, day, dose_interval_days)
    store.set_outcomes(ledger, outcomes, from_states=[s.EXTRACTED])
    return _validation_counts(rows, outcomes, summary)


def _validation_counts(rows: list[dict], outcomes: list[dict], summary: dict) -> dict:
    return {
        "validated": len(rows),
        "excluded": sum(o["state"] == s.EXCLUDED for o in outcomes),
        "rejected_local": sum(o["state"] == s.REJECTED_LOCAL for o in outcomes),
        "ready": sum(o["state"] == s.READY for o in outcomes),
        "unexpected_by_code": summary.get("unexpected_by_code", {}),
    }


def chunk_outcomes(
    ledger: sa.Engine, rows: list[dict], catalog, day: date, dose_interval_days: int | None
) -> tuple[list[dict], dict]:
    """Each row's validation outcome (excluded, rejected_local with code and reason, or ready with
    its resolved NPL-id), not yet written, and GX's summary."""
    import pandas as pd

    from vaxreport.validation import suite

    outcomes: list[dict] = []
    in_scope = []
    for row in rows:
        if is_out_of_scope(row["npl_id"], row["vaccine_name"]):
            text = reason("OUT-OF-SCOPE")
            outcomes.append(
                {
                    "id": row["id"],
                    "state": s.EXCLUDED,
                    "code": "OUT-OF-SCOPE",
                    "reason_sv": text.sv,
                    "reason_en": text.en,
                }
            )
        elif row["source_problem"]:
            text = reason("SOURCE-FORMAT")
            outcomes.append(
                {
                    "id": row["id"],
                    "state": s.REJECTED_LOCAL,
                    "code": "SOURCE-FORMAT",
                    "reason_sv": f"{text.sv}: {row['source_problem']}",
                    "reason_en": f"{text.en}: {row['source_problem']}",
                }
            )
        elif row["record_status"] == "entered-in-error":
            outcomes.append({"id": row["id"], "state": s.READY})  # a void is deleted, not validated
        else:
            in_scope.append(row)
    summary: dict = {"rows": 0}
    if in_scope:
        frame = pd.DataFrame(in_scope)
        covid = [npl for npl, p in catalog.products.items() if p.programme == "covid19"]
        interval = dose_interval_days or int(os.environ.get("VAXREPORT_DOSE_INTERVAL_DAYS", "21"))

        def history(person_keys: list[str]) -> list[dict]:
            return store.person_history(ledger, person_keys, covid)

        with VALIDATION.measure(len(frame)):
            derived = suite.derive_columns(frame, catalog, day, history, interval)
            failures, summary = suite.run_suite(derived, catalog)
        npl_ids = derived["resolved_npl_id"].astype(object).tolist()
        for row_id, npl in zip(derived["id"].tolist(), npl_ids, strict=True):
            code = failures.get(row_id)
            if code:
                text = reason(code)
                outcomes.append(
                    {"id": row_id, "state": s.REJECTED_LOCAL, "code": code, "reason_sv": text.sv, "reason_en": text.en}
                )
            else:
                outcomes.append({"id": row_id, "state": s.READY, "npl_id": npl})
    return outcomes, summary


BUILD_PAGE = 10_000
BUNDLES_PER_WRITE = 100
# the order rows are bundled in: by person, then date, record and version (`_person_order_with_id`)
BUNDLE_ORDER = ("person_key", "vaccination_date", "source", "source_record_id", "id")
READY_COLUMNS = ("id", "source", "source_record_id", "person_key", "vaccination_date", "record_status", "bundle_id")


def build_day(rt: Runtime, day: date, dry_run: bool = False) -> dict:
    """Group the window's ready (and earlier failed) records into batch Bundles of at most 100.

    A person's records of the window go into one bundle, in date order: the register's
    order-sensitive rules (duplicates, dose intervals) are all per person, so bundles can then be
    sent several at a time without changing any outcome. Rows are streamed and bundles written a
    hundred at a time, so memory does not grow with the day.

    A dry run writes each bundle to `var/bundles/<day>/bundle-NNNN.json` (0600: it holds person ids)
    and records nothing; a real run records the bundles in the ledger for `submit_day`.
    """
    ledger = rt.ledger()
    rv = s.record_versions
    if dry_run:
        return _write_dry_run(rt, day)
    with ledger.begin() as conn:  # failed rows of this and earlier days go round again, in new bundles
        retried = conn.execute(
            sa.update(rv)
            .where(rv.c.window_day <= day.isoformat(), rv.c.state == s.FAILED)
            .values(state=s.READY, bundle_id=None, updated_at=store.now_text())
        ).rowcount
    if retried:
        log.info("%d records that failed earlier are sent again", retried)
    built = _bundle_ready(ledger, day)
    log.info("built %d bundles with %d entries", built["bundles"], built["entries"])
    return {**built, "dry_run": False}


def _bundle_ready(ledger: sa.Engine, day: date, persons: tuple[str | None, str] | None = None) -> dict:
    """Bundle the unbundled ready rows of this and earlier windows, a hundred bundles per
    transaction; with `persons` = (after, up_to), only persons whose key sorts after `after` (when
    not None) and at or before `up_to`: a bounded range, so each chunk's query reads its own part
    of the person index and not every person before it."""
    n_bundles = n_entries = 0
    pending: list[list[dict]] = []
    for bundle in person_bundles(_sendable_rows(ledger, day, persons)):
        pending.append(bundle)
        if len(pending) >= BUNDLES_PER_WRITE:
            n_entries += _record_bundles(ledger, day, pending)
            n_bundles += len(pending)
            pending = []
    if pending:
        n_entries += _record_bundles(ledger, day, pending)
        n_bundles += len(pending)
    return {"bundles": n_bundles, "entries": n_entries}


def _ready_pages(ledger: sa.Engine, day: date, persons: tuple[str | None, str] | None = None) -> Iterator[list[dict]]:
    """The window's unbundled ready rows (narrow), ordered by person, date and record, in pages."""
    rv = s.record_versions
    query = (
        sa.select(*(rv.c[c] for c in READY_COLUMNS))
        .where(rv.c.window_day <= day.isoformat(), rv.c.state == s.READY, rv.c.bundle_id.is_(None))
        .order_by(*(rv.c[c] for c in BUNDLE_ORDER))
    )
    if persons is not None:
        after, up_to = persons
        query = query.where(rv.c.person_key <= up_to)
        if after is not None:
            query = query.where(rv.c.person_key > after)
    yield from stream_rows(ledger, query, BUILD_PAGE)


def _sendable_rows(ledger: sa.Engine, day: date, persons: tuple[str | None, str] | None = None) -> Iterator[dict]:
    """Ready rows to bundle: an update carries the register id it replaces; a void is not bundled
    (it becomes a DELETE, or nothing when the register never had the record)."""
    for page in _ready_pages(ledger, day, persons):
        rows, voids = _split_voids(ledger, page)
        _plan_voids_and_updates(ledger, voids, [r for r in rows if r["register_id"]])
        yield from rows


def _split_voids(ledger: sa.Engine, rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """Rows with the register id each replaces set (`register_id`), split into what goes into
    bundles and the voids (a void becomes a DELETE, or nothing when the register never had it)."""
    targets = store.register_targets(ledger, rows)
    for row in rows:
        row["register_id"] = targets.get(row["id"])
    voids = [r for r in rows if r["record_status"] == "entered-in-error"]
    return [r for r in rows if r["record_status"] != "entered-in-error"], voids


def person_bundles(rows: Iterator[dict], size: int = fb.MAX_ENTRIES) -> Iterator[list[dict]]:
    """Consecutive rows (ordered by person) into bundles, never splitting a person's records
    unless one person alone has more than a bundle holds."""
    bundle: list[dict] = []
    group: list[dict] = []

    def place(group: list[dict]) -> Iterator[list[dict]]:
        nonlocal bundle
        if len(bundle) + len(group) > size:
            if bundle:
                yield bundle
            bundle = []
        while len(group) > size:
            yield group[:size]
            group = group[size:]
        bundle.extend(group)

    for row in rows:
        if group and row["person_key"] != group[0]["person_key"]:
            yield from place(group)
            group = []
        group.append(row)
    if group:
        yield from place(group)
    if bundle:
        yield bundle


def _record_bundles(ledger: sa.Engine, day: date, bundles: list[list[dict]]) -> int:
    """Insert the bundles and hand each its rows, in one transaction; returns the entries placed."""
    stamp = store.now_text()
    with store.WRITES.measure(sum(len(b) for b in bundles)), ledger.begin() as conn:
        ids = _insert_bundles(conn, day, bundles, stamp)
        assignments = [{"id": r["id"], "bundle_id": bid} for bid, b in zip(ids, bundles, strict=True) for r in b]
        return store.update_rows(conn, assignments, [s.READY], stamp, unbundled_only=True)


def _insert_bundles(conn: sa.Connection, day: date, bundles: list[list[dict]], stamp: str) -> list[int]:
    """New `built` bundles for these groups of rows; their ids, in the same order."""
    if not bundles:
        return []
    result = conn.execute(
        sa.insert(s.bundles).returning(s.bundles.c.id, sort_by_parameter_order=True),
        [
            {
                "window_day": day.isoformat(),
                "bundle_uuid": str(uuid.uuid4()),
                "entries": len(b),
                "state": "built",
                "created_at": stamp,
            }
            for b in bundles
        ],
    )
    return list(result.scalars().all())


def _validate_and_bundle(
    ledger: sa.Engine,
    rows: list[dict],
    catalog,
    day: date,
    dose_interval_days: int | None,
    persons: tuple[str | None, str],
) -> dict:
    """`stream_day`'s step for one chunk: validate it and bundle its ready rows, and write each
    row's outcome, bundle and register target as one update, in one transaction with its bundles.

    Done as two steps (validate, then build) every record would be rewritten twice before it is
    sent, and on PostgreSQL a rewrite of a row is a new row version with an entry in every index:
    most of what a big day costs the ledger. Ready rows an earlier run left unbundled for the
    chunk's `persons` (after, up_to) are bundled with them, so a person's records still share a
    bundle. Returns counts and the seconds spent validating and building.
    """
    started = time.perf_counter()
    outcomes, summary = chunk_outcomes(ledger, rows, catalog, day, dose_interval_days)
    validated = time.perf_counter()
    by_id = {o["id"]: o for o in outcomes}
    ready = [{**r, "leftover": False} for r in rows if by_id[r["id"]]["state"] == s.READY]
    leftover = [{**r, "leftover": True} for page in _ready_pages(ledger, day, persons) for r in page]
    candidates = sorted([*ready, *leftover], key=_person_order_with_id)
    sendable, voids = _split_voids(ledger, candidates)
    text = reason("VOIDED")
    for row in voids:
        if not row["register_id"]:  # a void of a record the register never had: nothing to do
            row["void"] = {"state": s.EXCLUDED, "code": "VOIDED", "reason_sv": text.sv, "reason_en": text.en}
    bundles = list(person_bundles(iter(sendable)))
    stamp = store.now_text()
    with store.WRITES.measure(len(rows) + len(leftover)), ledger.begin() as conn:
        bundle_of = {
            r["id"]: bid for bid, b in zip(_insert_bundles(conn, day, bundles, stamp), bundles, strict=True) for r in b
        }
        placed = {}
        for row in candidates:
            placed[row["id"]] = {
                "id": row["id"],
                **(by_id[row["id"]] if not row["leftover"] else {"state": s.READY}),
                "register_id": row["register_id"],
                "bundle_id": bundle_of.get(row["id"]),
                **row.get("void", {}),
            }
        fresh = [placed.get(o["id"], o) for o in outcomes]
        store.update_rows(conn, fresh, [s.EXTRACTED], stamp)
        store.update_rows(conn, [placed[r["id"]] for r in leftover], [s.READY], stamp, unbundled_only=True)
    return {
        **_validation_counts(rows, outcomes, summary),
        "bundles": len(bundles),
        "entries": len(bundle_of),
        "seconds": {"validate": validated - started, "build": time.perf_counter() - validated},
    }


def _person_order_with_id(row: dict) -> tuple:
    """The order `_ready_pages` reads in: by person, then date, record and version."""
    return (*_person_order(row), row["id"])


def _write_dry_run(rt: Runtime, day: date) -> dict:
    ledger = rt.ledger()
    rows = [r for r in store.rows_in_state(ledger, day.isoformat(), [s.READY], up_to=True) if r["bundle_id"] is None]
    rows, voids = _split_voids(ledger, rows)
    ordered = [r for bundle in person_bundles(iter(sorted(rows, key=_person_order))) for r in bundle]
    out_dir = bundles_dir() / day.isoformat()
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    out_dir.chmod(0o700)
    for old in out_dir.glob("bundle-*.json"):
        old.unlink()
    n_bundles = 0
    for n_bundles, chunk in enumerate(person_bundles(iter(ordered)), start=1):
        path = out_dir / f"bundle-{n_bundles:04d}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(fb.batch_bundle([fb.immunization_entry(r) for r in fb.send_order(chunk)]), fh, ensure_ascii=False)
    log.info(
        "dry run: wrote %d bundles (%d entries) to %s; %d deletes not written",
        n_bundles,
        len(ordered),
        out_dir,
        sum(1 for v in voids if v["register_id"]),
    )
    return {"bundles": n_bundles, "entries": len(ordered), "dry_run": True}


def _person_order(row: dict) -> tuple:
    return (row["person_key"], str(row.get("vaccination_date") or ""), row["source"], row["source_record_id"])


def _plan_voids_and_updates(ledger: sa.Engine, voids: list[dict], updates: list[dict]) -> None:
    """Record each update's target, and what becomes of each void: a DELETE of what the register
    holds, or nothing to do when the record never reached it. Bulk writes: a day of many
    corrections must not cost a statement per row."""
    text = reason("VOIDED")
    targets = [{"id": r["id"], "register_id": r["register_id"]} for r in [*updates, *voids] if r["register_id"]]
    unsent = [
        {"id": v["id"], "state": s.EXCLUDED, "code": "VOIDED", "reason_sv": text.sv, "reason_en": text.en}
        for v in voids
        if not v["register_id"]
    ]
    if targets or unsent:
        with ledger.begin() as conn:
            store.update_rows(conn, [*targets, *unsent], [s.READY], store.now_text())


def _send_deletes(rt: Runtime, client: RegistryClient, day: date) -> int:
    """Voided records the register holds are deleted one by one (the register allows no bulk delete)."""
    ledger = rt.ledger()
    rows = [
        r
        for r in store.rows_in_state(ledger, day.isoformat(), [s.READY, s.SUBMITTED], up_to=True)
        if r["record_status"] == "entered-in-error" and r["register_id"] and r["bundle_id"] is None
    ]
    sent = 0
    for row in rows:
        if not store.set_outcomes(ledger, [{"id": row["id"], "state": s.SUBMITTED}], from_states=[s.READY]):
            continue  # claimed by a concurrent run
        request_id = str(uuid.uuid5(fb.NAMESPACE, f"delete|{row['id']}"))  # a resend is a replay
        try:
            resp = client.request("DELETE", f"/fhir/Immunization/{row['register_id']}", request_id=request_id)
        except RegistryUnavailable as exc:
            log.error("register unavailable during deletes: %s", exc)
            store.set_outcomes(
                ledger,
                [{"id": row["id"], "state": s.FAILED, "code": "REGISTER-UNAVAILABLE"}],
                from_states=[s.SUBMITTED],
            )
            break
        sent += 1
        if resp.status_code in (200, 204, 404):  # 404: not there any more, which is what a void wants
            outcome = {"state": s.ACCEPTED, "code": "DELETED" if resp.status_code != 404 else "ALREADY-ABSENT"}
        else:
            outcome = {"state": s.FAILED, "code": f"HTTP-{resp.status_code}"}
        store.set_outcomes(ledger, [{"id": row["id"], **outcome}], from_states=[s.SUBMITTED])
        if outcome["state"] == s.ACCEPTED:
            store.supersede_replaced(ledger, [row["id"]])
    return sent


def day_summary(rt: Runtime, day: date, sent: int) -> dict:
    counts = store.state_counts(rt.ledger(), day.isoformat())
    summary = {"day": day.isoformat(), "extracted": sum(counts.values()) - counts[s.SUPERSEDED]}
    summary.update({k: counts[k] for k in SUMMARY_STATES})
    summary["sent"] = sent
    summary["pending"] = counts[s.EXTRACTED] + counts[s.READY] + counts[s.SUBMITTED]
    return summary


def summary_line(summary: dict) -> str:
    fields = " ".join(f"{k}={summary[k]}" for k in ("extracted", *SUMMARY_STATES, "sent"))
    return f"vaxreport run {summary['day']}: {fields}"


def report_day(rt: Runtime, day: date, sent: int) -> dict:
    """Write the rejection report and the run summary; return the summary (counts only)."""
    from vaxreport.reports import rejections

    summary = day_summary(rt, day, sent)
    out_dir = reports_dir() / day.isoformat()
    rows = store.rows_in_state(rt.ledger(), day.isoformat(), [s.REJECTED_LOCAL, s.REJECTED_REGISTER])
    index = rejections.write(rows, out_dir / "rejections", day)
    summary["report"] = str(index)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    log.info("%s", summary_line(summary))
    return summary


def run_day(rt: Runtime, day: date, dry_run: bool = False) -> dict:
    """All steps for one day: what the DAG does, without Airflow. On a PostgreSQL ledger the
    middle steps overlap (`stream_day`); the last submission pass then only mops up."""
    failed_sources = extract_day(rt, day)["failed_sources"]
    ensure_catalog(rt)
    sent = 0
    if not dry_run and rt.ledger().dialect.name == "postgresql":
        sent = stream_day(rt, day)["sent"]
    else:
        validate_day(rt, day)
        build_day(rt, day, dry_run=dry_run)
    submitted = submit_day(rt, day, dry_run=dry_run)
    summary = report_day(rt, day, sent + submitted["sent"])
    return {**summary, "failed_sources": failed_sources, "unavailable": submitted["unavailable"]}


def stream_day(rt: Runtime, day: date, dose_interval_days: int | None = None) -> dict:
    """Validate, bundle and send a large day at once instead of one step after the other.

    Submission is paced by the register's rate, so it is the longest step of a big day; here it
    starts with the first validated chunk. Chunks are whole persons in key order, so once a chunk
    is validated every ready record of a person up to its last key is final and can be bundled
    and sent; a sender thread takes bundles as they are committed. The same ledger states and
    guarded claims as the separate steps make it safe: what is left (transient failures, voids)
    goes through `submit_day` afterwards. Returns counts and the seconds each part was busy.
    """
    # validation's heavy imports (pandas, GX, which pulls in sqlalchemy.orm) happen here, before
    # the sender thread exists: a module imported by two threads at once can be seen half-made
    import sqlalchemy.orm  # noqa: F401

    from vaxreport.validation import suite  # noqa: F401

    ledger = rt.ledger()
    catalog = cat.load(ledger)
    timings = {"validate": 0.0, "build": 0.0, "submit": 0.0}
    totals = {"validated": 0, "bundles": 0, "entries": 0, "sent": 0, "unavailable": False}
    validated_all = threading.Event()

    errors: list[BaseException] = []

    def sender() -> None:
        try:
            send_all()
        except BaseException as exc:  # handed to the main thread, which raises it after joining
            errors.append(exc)

    def send_all() -> None:
        started = time.perf_counter()
        with rt.registry() as client:
            while True:
                finished = validated_all.is_set()  # read before looking: no bundle can be missed
                result = _send_pending(rt, client, day)
                totals["sent"] += result["sent"]
                if result["unavailable"]:
                    totals["unavailable"] = True
                    break
                if finished and not result["bundles"]:
                    break
                if not result["bundles"]:
                    time.sleep(0.05)
        timings["submit"] = time.perf_counter() - started

    thread = threading.Thread(target=sender, name="stream-sender", daemon=True)
    thread.start()
    last_person: str | None = None  # chunk k bundles the persons after chunk k-1's last, up to its own
    try:
        for rows in person_chunks(ledger, day):
            done = _validate_and_bundle(
                ledger, rows, catalog, day, dose_interval_days, persons=(last_person, rows[-1]["person_key"])
            )
            last_person = rows[-1]["person_key"]
            for part in ("validate", "build"):
                timings[part] += done["seconds"][part]
            for key in ("validated", "bundles", "entries"):
                totals[key] += done[key]
            del rows  # before the next chunk is read: two chunks alive at once double the peak memory
        started = time.perf_counter()
        built = _bundle_ready(ledger, day)  # ready rows of earlier windows past the last chunk's persons
        timings["build"] += time.perf_counter() - started
        totals["bundles"] += built["bundles"]
        totals["entries"] += built["entries"]
    finally:
        validated_all.set()
        thread.join()
    if errors:
        raise errors[0]
    log.info(
        "streamed %d records: %d bundles built, %d entries sent", totals["validated"], totals["bundles"], totals["sent"]
    )
    return {**totals, "seconds": timings}
