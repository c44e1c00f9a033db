"""Reads and writes of the ledger. Every write is an upsert or a guarded update, so re-running a
step repeats nothing: a version already recorded is not recorded again, and a row only leaves a
state the caller names."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from vaxreport.ledger import schema as s
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


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def record_extracted(
    engine: sa.Engine, records: Iterable[dict], window_day: str, chunk_size: int = 2000
) -> dict[str, int]:
    """Write extracted records as new versions; versions already in the ledger are left alone.

    An older version of the same source record that was never sent is superseded, so only the
    latest content of a record can be sent.
    """
    seen = new = 0
    stamp = now_text()
    stmt = _insert_ignore(engine, s.record_versions)
    for chunk in _chunks(records, chunk_size):
        rows = []
        for rec in chunk:
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
            rows.append(row)
        with engine.begin() as conn:
            before = conn.execute(sa.select(sa.func.count()).select_from(s.record_versions)).scalar_one()
            conn.execute(stmt, rows)
            after = conn.execute(sa.select(sa.func.count()).select_from(s.record_versions)).scalar_one()
            keys = [(r["source"], r["source_record_id"], r["version_hash"]) for r in rows]
            new += _revive_reverted(conn, keys, window_day)
            _supersede_older(conn, keys)
        seen += len(rows)
        new += after - before
    return {"extracted": seen, "new_versions": new}


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
        for chunk in _chunks(sorted(wanted), 500):
            records = [r for _, r in chunk]
            result = conn.execute(
                sa.select(rv.c.id, rv.c.source, rv.c.source_record_id, rv.c.register_id).where(
                    rv.c.source_record_id.in_(records), rv.c.state == s.ACCEPTED, rv.c.register_id.is_not(None)
                )
            )
            for r in result:
                key = (r.source, r.source_record_id)
                if key in wanted and (key not in found or r.id > found[key][0]):
                    found[key] = (r.id, r.register_id)
    return {
        row["id"]: found[key][1]
        for row in rows
        if (key := (row["source"], row["source_record_id"])) in found and found[key][0] != row["id"]
    }


def supersede_replaced(engine: sa.Engine, row_ids: Iterable[int]) -> int:
    """Once a version is accepted (or deleted), the record's other accepted versions are history
    (other, not older: a record changed back revives its first version)."""
    rv = s.record_versions
    changed = 0
    with engine.begin() as conn:
        for chunk in _chunks(sorted(row_ids), 500):
            newer = conn.execute(sa.select(rv.c.id, rv.c.source, rv.c.source_record_id).where(rv.c.id.in_(chunk)))
            for r in newer:
                changed += conn.execute(
                    sa.update(rv)
                    .where(
                        rv.c.source == r.source,
                        rv.c.source_record_id == r.source_record_id,
                        rv.c.id != r.id,
                        rv.c.state == s.ACCEPTED,
                    )
                    .values(state=s.SUPERSEDED, updated_at=now_text())
                ).rowcount
    return changed


def sent_in_context(engine: sa.Engine, context_id: str) -> int:
    """Entries of the bundles a run (one X-Context-ID, all its tries) had answered by the register."""
    rv, bt = s.record_versions, s.bundles
    with engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count())
            .select_from(rv.join(bt, rv.c.bundle_id == bt.c.id))
            .where(bt.c.context_id == context_id, bt.c.state == "answered")
        ).scalar_one()


def rows_by_id(engine: sa.Engine, ids: Iterable[int]) -> list[dict]:
    rv = s.record_versions
    out: list[dict] = []
    with engine.connect() as conn:
        for chunk in _chunks(sorted(ids), 500):
            out.extend(dict(r) for r in conn.execute(sa.select(rv).where(rv.c.id.in_(chunk))).mappings())
    return out


def rows_of_bundle(engine: sa.Engine, bundle_id: int, states: Iterable[str]) -> list[dict]:
    rv = s.record_versions
    with engine.connect() as conn:
        result = conn.execute(sa.select(rv).where(rv.c.bundle_id == bundle_id, rv.c.state.in_(list(states))))
        return [dict(r) for r in result.mappings()]


def set_outcomes(engine: sa.Engine, outcomes: Iterable[dict], from_states: Iterable[str]) -> int:
    """Move rows to their outcome; a row no longer in one of `from_states` is not touched.

    Each outcome dict has `id`, `state` and optionally `code`, `reason_sv`, `reason_en`,
    `register_id`, `npl_id`.
    """
    rv = s.record_versions
    allowed = list(from_states)
    changed = 0
    stamp = now_text()
    for chunk in _chunks(outcomes, 1000):
        with engine.begin() as conn:
            for out in chunk:
                values = {k: v for k, v in out.items() if k != "id"}
                values["updated_at"] = stamp
                changed += conn.execute(
                    sa.update(rv).where(rv.c.id == out["id"], rv.c.state.in_(allowed)).values(**values)
                ).rowcount
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
    live = [s.READY, s.SUBMITTED, s.ACCEPTED, s.FAILED]
    out: list[dict] = []
    with engine.connect() as conn:
        for chunk in _chunks(sorted(set(person_keys)), 500):
            result = conn.execute(
                sa.select(rv.c.person_key, rv.c.vaccination_date, rv.c.source, rv.c.source_record_id).where(
                    rv.c.person_key.in_(chunk),
                    rv.c.record_status == "completed",
                    rv.c.npl_id.in_(npl_ids),
                    rv.c.state.in_(live),
                )
            )
            out.extend(dict(r) for r in result.mappings())
    return out
