"""Reads and writes of the ledger. Every write is an upsert or a guarded update, so re-running a
step repeats nothing: a version already recorded is not recorded again, and a row only leaves a
state the caller names."""

from __future__ import annotations

import hashlib
import io
import json
import operator
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from vaxreport.ledger import schema as s
from vaxreport.meters import LEDGER_WRITES
from vaxreport.prefetch import prefetched
from vaxreport.privacy import person_key

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

CONTENT_FIELDS = (
    "person_id",
    "vaccine_name",
    "npl_id",
    "batch",
    "dose_number",
    "vaccination_date",
    "caregiver_hsa_id",
    "caregiver_name",
    "care_unit_hsa_id",
    "care_unit_name",
    "record_status",
    "source_problem",
)


WRITES = LEDGER_WRITES


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def version_hash(record: dict) -> str:
    """A record's content fingerprint: the same content is the same version, whenever it is seen."""
    content = json.dumps([record.get(f) for f in CONTENT_FIELDS], ensure_ascii=False)
    return hashlib.sha256(content.encode()).hexdigest()


def _insert_ignore(engine: sa.Engine, table: sa.Table):
    name = engine.dialect.name
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert

        return insert(table).on_conflict_do_nothing()
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert

        return insert(table).on_conflict_do_nothing()
    return table.insert().prefix_with("IGNORE")


KEYS_PER_QUERY = {"postgresql": 10_000}  # one array parameter; elsewhere an IN list of 500


def _keys_per_query(conn: sa.Connection) -> int:
    return KEYS_PER_QUERY.get(conn.dialect.name, 500)


def _key_chunks(conn: sa.Connection, keys: list) -> Iterator[list]:
    return _chunks(keys, _keys_per_query(conn))


def _among(conn: sa.Connection, column: sa.Column, keys: list) -> sa.ColumnElement:
    """`column IN keys`. On PostgreSQL one array parameter (`= ANY`): thousands of keys are then
    one bind and a short statement, where an IN list is a parameter each to render and parse."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == sa.any_(sa.bindparam(None, list(keys), type_=ARRAY(column.type)))
    return column.in_(keys)


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _version_row(rec: dict, window_day: str, stamp: str) -> dict:
    row = {f: rec.get(f) for f in CONTENT_FIELDS}
    row.update(
        source=rec["source"],
        source_record_id=rec["source_record_id"],
        version_hash=version_hash(rec),
        window_day=window_day,
        state=s.EXTRACTED,
        person_key=person_key(rec.get("person_id") or ""),
        registered_at=rec.get("registered_at"),
        first_seen_at=stamp,
        updated_at=stamp,
    )
    return row


def _known_versions(conn: sa.Connection, rows: list[dict]) -> dict[tuple[str, str], dict[str, str]]:
    """The versions (hash -> state) the ledger already holds for these rows' records."""
    rv = s.record_versions
    known: dict[tuple[str, str], dict[str, str]] = {}
    keys = {(r["source"], r["source_record_id"]) for r in rows}
    for source, ids in _by_source(keys, _keys_per_query(conn)):
        query = sa.select(rv.c.source_record_id, rv.c.version_hash, rv.c.state).where(
            rv.c.source == source, _among(conn, rv.c.source_record_id, ids)
        )
        for record_id, version, state in conn.execute(query):
            known.setdefault((source, record_id), {})[version] = state
    return known


EXTRACT_CHUNK = 20_000  # versions per transaction while extracting (a commit's fixed cost is paid per chunk)
ANALYZE_AFTER = 10_000  # new versions; a smaller day changes the ledger's statistics little


def record_extracted(
    engine: sa.Engine, records: Iterable[dict], window_day: str, chunk_size: int = EXTRACT_CHUNK
) -> dict[str, int]:
    """Write extracted records as new versions; versions already in the ledger are left alone.

    An older version of the same source record that was never sent is superseded, so only the
    latest content of a record can be sent. The common case, a record never seen before, is one
    bulk insert per chunk; only records the ledger already knows cost statements of their own.
    """
    seen = new = 0
    stamp = now_text()
    for rows in prefetched(version_rows(chunk, window_day, stamp) for chunk in _chunks(records, chunk_size)):
        new += write_versions(engine, rows, window_day)
        seen += len(rows)
    if engine.dialect.name == "postgresql" and new >= ANALYZE_AFTER:
        # the planner's picture of the ledger lags a big day by minutes (autovacuum's pace), and
        # a picture without today's rows plans the day's lookups by person as reads of everything
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE record_versions")
    return {"extracted": seen, "new_versions": new}


def version_rows(records: Iterable[dict], window_day: str, stamp: str) -> list[dict]:
    """Extracted records as ledger rows: content, version hash and person key, state extracted."""
    return [_version_row(rec, window_day, stamp) for rec in records]


def write_versions(engine: sa.Engine, rows: list[dict], window_day: str) -> int:
    """One transaction of `record_extracted`: new versions in, reverted ones revived, older ones
    superseded; returns the versions that became current."""
    with WRITES.measure(len(rows)), engine.begin() as conn:
        known = _known_versions(conn, rows)
        fresh, reverted, changed = [], [], []
        for r in rows:
            versions = known.get((r["source"], r["source_record_id"]), {})
            key = (r["source"], r["source_record_id"], r["version_hash"])
            if r["version_hash"] not in versions:
                fresh.append(r)
            elif versions[r["version_hash"]] == s.SUPERSEDED:
                reverted.append(key)
            if any(h != r["version_hash"] for h in versions):
                changed.append(key)
        new = insert_versions(conn, fresh)
        new += _revive_reverted(conn, reverted, window_day)
        _supersede_older(conn, changed)
    return new


VERSION_COLUMNS = (
    *CONTENT_FIELDS,
    "source",
    "source_record_id",
    "version_hash",
    "window_day",
    "state",
    "person_key",
    "registered_at",
    "first_seen_at",
    "updated_at",
)


def insert_versions(conn: sa.Connection, rows: list[dict]) -> int:
    """Insert record versions, skipping any already there (a concurrent run's); returns how many
    went in. PostgreSQL takes them through COPY into a staging table, the fastest way in."""
    if not rows:
        return 0
    if conn.dialect.name == "postgresql":
        columns = ", ".join(VERSION_COLUMNS)
        conn.exec_driver_sql(
            "CREATE TEMP TABLE IF NOT EXISTS vx_version_stage ON COMMIT DELETE ROWS AS "
            f"SELECT {columns} FROM record_versions WITH NO DATA"
        )
        copy_rows(conn, "vx_version_stage", VERSION_COLUMNS, rows)
        inserted = conn.exec_driver_sql(
            f"INSERT INTO record_versions ({columns}) SELECT {columns} FROM vx_version_stage ON CONFLICT DO NOTHING"
        ).rowcount
        conn.exec_driver_sql("TRUNCATE vx_version_stage")
        return inserted
    rv = s.record_versions
    ids = sorted({r["source_record_id"] for r in rows})
    count = sa.select(sa.func.count()).select_from(rv).where(rv.c.source_record_id.in_(ids))
    before = conn.execute(count).scalar_one()
    conn.execute(_insert_ignore(conn.engine, rv), rows)
    return conn.execute(count).scalar_one() - before


def _copy_text(value: object) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    text = str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


def _copy_line(row: dict, columns: tuple[str, ...]) -> str:
    return _copy_values(tuple(row.get(c) for c in columns))


def _copy_values(values: tuple) -> str:
    """One row in COPY's text format. The common row (no tab, newline, carriage return or
    backslash in any value) is joined at once, NULLs as \\N (one backslash each); any other row
    goes value by value through the escaping. A bool is written True/False, which PostgreSQL reads."""
    line = "\t".join(["\\N" if v is None else v if v.__class__ is str else str(v) for v in values])
    if line.count("\t") != len(values) - 1 or line.count("\\") != values.count(None) or "\n" in line or "\r" in line:
        return "\t".join(_copy_text(v) for v in values)
    return line


def copy_rows(conn: sa.Connection, table: str, columns: tuple[str, ...], rows: Iterable[dict]) -> None:
    """PostgreSQL COPY (text format) of `rows` into `table`, inside the connection's transaction."""
    pick = operator.itemgetter(*columns) if len(columns) > 1 else (lambda row: (row[columns[0]],))
    lines = []
    for row in rows:
        try:
            values = pick(row)
        except KeyError:  # a row without some columns: NULL there
            values = tuple(row.get(c) for c in columns)
        lines.append(_copy_values(values))
    buffer = io.StringIO("\n".join(lines) + "\n" if lines else "")
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", buffer)
    finally:
        cursor.close()


def _revive_reverted(conn: sa.Connection, keys: list[tuple[str, str, str]], window_day: str) -> int:
    """A record changed back to content it had before (A -> B -> A): that old version is current
    again and goes through validation and submission anew, as an update of what the register holds."""
    rv = s.record_versions
    revived = 0
    for source, record_id, vhash in keys:
        revived += conn.execute(
            sa.update(rv)
            .where(
                rv.c.source == source,
                rv.c.source_record_id == record_id,
                rv.c.version_hash == vhash,
                rv.c.state == s.SUPERSEDED,
            )
            .values(
                state=s.EXTRACTED,
                window_day=window_day,
                bundle_id=None,
                register_id=None,
                code=None,
                reason_sv=None,
                reason_en=None,
                updated_at=now_text(),
            )
        ).rowcount
    return revived


def _supersede_older(conn: sa.Connection, keys: list[tuple[str, str, str]]) -> None:
    rv = s.record_versions
    for source, record_id, vhash in keys:
        conn.execute(
            sa.update(rv)
            .where(
                rv.c.source == source,
                rv.c.source_record_id == record_id,
                rv.c.version_hash != vhash,
                # never sent, failed, or rejected: only the newest content may go out, and a
                # correction of a rejected record closes its rejection
                rv.c.state.in_([s.EXTRACTED, s.READY, s.FAILED, s.REJECTED_LOCAL, s.REJECTED_REGISTER]),
            )
            .values(state=s.SUPERSEDED, bundle_id=None, updated_at=now_text())
        )


def rows_in_state(engine: sa.Engine, window_day: str, states: Iterable[str], up_to: bool = False) -> list[dict]:
    """Rows of one window in these states; with `up_to`, of that window and every earlier one
    (open work a run left behind is picked up by the next run)."""
    rv = s.record_versions
    day = rv.c.window_day <= window_day if up_to else rv.c.window_day == window_day
    with engine.connect() as conn:
        result = conn.execute(sa.select(rv).where(day, rv.c.state.in_(list(states))).order_by(rv.c.id))
        return [dict(r) for r in result.mappings()]


def register_targets(engine: sa.Engine, rows: list[dict]) -> dict[int, str]:
    """For rows whose record already has an accepted version, the register id to update or delete.

    A correction is a PUT to that id and a void a DELETE of it: sending either as a new POST would
    only meet the register's identifier check and leave the old content in place.
    """
    rv = s.record_versions
    wanted = {(r["source"], r["source_record_id"]) for r in rows}
    found: dict[tuple[str, str], tuple[int, str]] = {}
    with engine.connect() as conn:
        for source, chunk in _by_source(wanted, _keys_per_query(conn)):
            # by key alone, the state tested here and not in SQL: with `state = 'accepted'` in the
            # query, a planner that thinks few rows accepted (statistics lag a big day) reads every
            # accepted row through the state index instead of the few versions of these records
            result = conn.execute(
                sa.select(rv.c.id, rv.c.source_record_id, rv.c.register_id, rv.c.state).where(
                    rv.c.source == source, _among(conn, rv.c.source_record_id, chunk)
                )
            )
            for r in result:
                key = (source, r.source_record_id)
                if r.state != s.ACCEPTED or r.register_id is None:
                    continue
                if key not in found or r.id > found[key][0]:
                    found[key] = (r.id, r.register_id)
    return {
        row["id"]: found[key][1]
        for row in rows
        if (key := (row["source"], row["source_record_id"])) in found and found[key][0] != row["id"]
    }


def _by_source(keys: Iterable[tuple[str, str]], size: int = 500) -> Iterator[tuple[str, list[str]]]:
    """(source, record ids) in chunks of `size`: the shape the unique index (source, record id,
    version) answers with one range per source."""
    per_source: dict[str, list[str]] = {}
    for source, record_id in sorted(keys):
        per_source.setdefault(source, []).append(record_id)
    for source, ids in per_source.items():
        for chunk in _chunks(ids, size):
            yield source, chunk


def supersede_replaced(engine: sa.Engine, row_ids: Iterable[int]) -> int:
    """Once a version is accepted (or deleted), the record's other accepted versions are history
    (other, not older: a record changed back revives its first version)."""
    with engine.begin() as conn:
        return supersede_replaced_in(conn, list(row_ids))


def supersede_replaced_in(
    conn: sa.Connection, row_ids: list[int], keys: Iterable[tuple[str, str]] | None = None
) -> int:
    """`supersede_replaced` inside the caller's transaction; `keys`, the rows' (source, record id)
    when the caller has them at hand (the sender does), saves looking them up.

    Looked up by key through the unique index, states compared here: a query with
    `state = 'accepted'` in it may be planned as a read of every accepted row (see
    `register_targets`), and the sender runs this once per bundle. Usually nothing is found (a new
    record has no other version) and nothing is written.
    """
    rv = s.record_versions
    ids = set(row_ids)
    if keys is None:
        keys = set()
        for chunk in _key_chunks(conn, sorted(ids)):
            keys.update(conn.execute(sa.select(rv.c.source, rv.c.source_record_id).where(_among(conn, rv.c.id, chunk))))
    replaced = []
    for source, chunk in _by_source(keys, _keys_per_query(conn)):
        versions = conn.execute(
            sa.select(rv.c.id, rv.c.state).where(rv.c.source == source, _among(conn, rv.c.source_record_id, chunk))
        )
        replaced.extend(v.id for v in versions if v.state == s.ACCEPTED and v.id not in ids)
    changed = 0
    for chunk in _key_chunks(conn, sorted(replaced)):
        changed += conn.execute(
            sa.update(rv)
            .where(_among(conn, rv.c.id, chunk), rv.c.state == s.ACCEPTED)
            .values(state=s.SUPERSEDED, updated_at=now_text())
        ).rowcount
    return changed


def of_run(owner: sa.ColumnElement, context_id: str) -> sa.ColumnElement:
    """A bundle claimed by any worker of one run: `bundles.context_id` holds the run's X-Context-ID
    alone (claims made before submission had shares) or followed by `/<share>/<nonce>`."""
    return sa.or_(owner == context_id, owner.startswith(f"{context_id}/", autoescape=True))


def sent_in_context(engine: sa.Engine, context_id: str) -> int:
    """Entries of the bundles a run (one X-Context-ID, all its tries and shares) had answered by
    the register."""
    rv, bt = s.record_versions, s.bundles
    with engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count())
            .select_from(rv.join(bt, rv.c.bundle_id == bt.c.id))
            .where(of_run(bt.c.context_id, context_id), bt.c.state == "answered")
        ).scalar_one()


def rows_by_id(engine: sa.Engine, ids: Iterable[int]) -> list[dict]:
    rv = s.record_versions
    out: list[dict] = []
    with engine.connect() as conn:
        for chunk in _chunks(sorted(ids), 500):
            out.extend(dict(r) for r in conn.execute(sa.select(rv).where(rv.c.id.in_(chunk))).mappings())
    return out


OUTCOME_COLUMNS = ("state", "code", "reason_sv", "reason_en", "register_id", "npl_id", "bundle_id")


def set_outcomes(engine: sa.Engine, outcomes: Iterable[dict], from_states: Iterable[str]) -> int:
    """Move rows to their outcome; a row no longer in one of `from_states` is not touched.

    Each outcome dict has `id`, `state` and optionally `code`, `reason_sv`, `reason_en`,
    `register_id`, `npl_id`, `bundle_id`. Rows are written in bulk, grouped by which fields they set.
    """
    allowed = list(from_states)
    changed = 0
    stamp = now_text()
    for chunk in _chunks(outcomes, 5000):
        with WRITES.measure(len(chunk)), engine.begin() as conn:
            changed += update_rows(conn, chunk, allowed, stamp)
    return changed


UNNEST_MAX = 2000  # rows: up to here one UPDATE with array parameters, beyond it COPY into a stage
_OUTCOME_TYPES = {"id": "bigint", "bundle_id": "bigint"}  # the others are text


def _update_from_arrays(
    conn: sa.Connection, fields: tuple[str, ...], items: list[dict], allowed: list[str], stamp: str, unbundled: bool
) -> int:
    """PostgreSQL: one UPDATE ... FROM unnest(arrays), one round trip (a bundle's outcomes)."""
    columns = ("id", *fields)
    arrays = ", ".join(f"CAST(:a_{c} AS {_OUTCOME_TYPES.get(c, 'text')}[])" for c in columns)
    assignments = ", ".join(f"{f} = st.{f}" for f in fields)
    sql = (
        f"UPDATE record_versions AS rv SET {assignments}, updated_at = :stamp "
        f"FROM unnest({arrays}) AS st({', '.join(columns)}) "
        "WHERE rv.id = st.id AND rv.state = ANY(:allowed)" + (" AND rv.bundle_id IS NULL" if unbundled else "")
    )
    params = {f"a_{c}": [item.get(c) for item in items] for c in columns}
    return conn.execute(sa.text(sql), {**params, "stamp": stamp, "allowed": allowed}).rowcount


def update_rows(
    conn: sa.Connection, outcomes: list[dict], allowed: list[str], stamp: str, unbundled_only: bool = False
) -> int:
    """One statement per group of outcomes that set the same fields (see `set_outcomes`);
    `unbundled_only` leaves rows alone that a bundle already holds (a concurrent builder's)."""
    groups: dict[tuple[str, ...], list[dict]] = {}
    for out in outcomes:
        fields = tuple(sorted(k for k in out if k != "id"))
        unknown = set(fields) - set(OUTCOME_COLUMNS)
        if unknown:
            raise ValueError(f"not an outcome field: {sorted(unknown)}")
        groups.setdefault(fields, []).append(out)
    changed = 0
    rv = s.record_versions
    for fields, items in groups.items():
        if conn.dialect.name == "postgresql" and len(items) <= UNNEST_MAX:
            changed += _update_from_arrays(conn, fields, items, allowed, stamp, unbundled_only)
        elif conn.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "CREATE TEMP TABLE IF NOT EXISTS vx_outcome_stage (id BIGINT PRIMARY KEY, state VARCHAR(20), "
                "code VARCHAR(40), reason_sv TEXT, reason_en TEXT, register_id VARCHAR(64), npl_id TEXT, "
                "bundle_id BIGINT) ON COMMIT DELETE ROWS"
            )
            copy_rows(conn, "vx_outcome_stage", ("id", *fields), items)
            # without statistics the planner takes the stage for tiny and may hash-join it against
            # a scan of the whole ledger (a second per 10,000 rows at a million): count it first
            conn.exec_driver_sql("ANALYZE vx_outcome_stage")
            assignments = ", ".join(f"{f} = st.{f}" for f in fields)
            changed += conn.execute(
                sa.text(
                    f"UPDATE record_versions AS rv SET {assignments}, updated_at = :stamp "
                    "FROM vx_outcome_stage AS st WHERE rv.id = st.id AND rv.state = ANY(:allowed)"
                    + (" AND rv.bundle_id IS NULL" if unbundled_only else "")
                ),
                {"stamp": stamp, "allowed": allowed},
            ).rowcount
            conn.exec_driver_sql("TRUNCATE vx_outcome_stage")
        else:
            # the states are the ledger's own constants, inlined: executemany takes no expanding IN
            states = [sa.literal_column(f"'{state}'") for state in allowed if state in s.STATES]
            stmt = (
                sa.update(rv)
                .where(rv.c.id == sa.bindparam("b_id"), rv.c.state.in_(states))
                .values({f: sa.bindparam(f"b_{f}") for f in fields} | {"updated_at": stamp})
            )
            if unbundled_only:
                stmt = stmt.where(rv.c.bundle_id.is_(None))
            result = conn.execute(stmt, [{f"b_{k}": v for k, v in out.items()} for out in items])
            changed += result.rowcount
    return changed


def state_counts(engine: sa.Engine, window_day: str) -> dict[str, int]:
    """Current state of the window's records (latest version of each source record)."""
    rv = s.record_versions
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(rv.c.state, sa.func.count()).where(rv.c.window_day == window_day).group_by(rv.c.state)
        ).all()
    counts = Counter(dict.fromkeys(s.STATES, 0))
    counts.update(dict(rows))
    return dict(counts)


def person_history(engine: sa.Engine, person_keys: list[str], npl_ids: list[str]) -> list[dict]:
    """Given doses of these persons (by key) and products, already in or on their way to the register."""
    if not person_keys or not npl_ids:
        return []
    rv = s.record_versions
    live = {s.READY, s.SUBMITTED, s.ACCEPTED, s.FAILED}
    products = set(npl_ids)
    out: list[dict] = []
    with engine.connect() as conn:
        for chunk in _key_chunks(conn, sorted(set(person_keys))):
            # by person alone, the state tested here: with the state in the query a planner misled
            # by lagging statistics reads every row in those states (see `register_targets`)
            result = conn.execute(
                sa.select(
                    rv.c.person_key,
                    rv.c.vaccination_date,
                    rv.c.source,
                    rv.c.source_record_id,
                    rv.c.state,
                ).where(
                    _among(conn, rv.c.person_key, chunk),
                    rv.c.record_status == "completed",
                    rv.c.npl_id.in_(sorted(products)),
                )
            )
            out.extend(
                {"person_key": key, "vaccination_date": on, "source": source, "source_record_id": record_id}
                for key, on, source, record_id, state in result
                if state in live
            )
    return out
