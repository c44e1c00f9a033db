"""The register's memory: vaccinations, identifier aliases, later findings, replayable answers, counters.

SQLite, in memory by default or in a file (``--db``) so state survives a restart. A batch is
read with a few set-wise queries and written with one ``executemany`` per table in one
transaction (:meth:`Store.write_batch`), so a crash never leaves half a vaccination (nor half
a batch), and a lock serialises writers, so two batches never interleave. Deleted
vaccinations stay, marked, for audit.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import wraps
from typing import TYPE_CHECKING, Any, Concatenate, NamedTuple, ParamSpec, TypeVar

from nvr_emulator import jsonio

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Iterator
    from pathlib import Path

SCHEMA_VERSION = 2  # 2: findings
WAL_CHECKPOINT_PAGES = 10_000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS immunizations (
    id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    identifier_system TEXT NOT NULL,
    identifier_value TEXT NOT NULL,
    person_id TEXT NOT NULL,
    npl_id TEXT NOT NULL,
    date TEXT NOT NULL,
    lot TEXT NOT NULL,
    dose INTEGER,
    caregiver TEXT NOT NULL,
    careunit_system TEXT NOT NULL,
    careunit TEXT NOT NULL,
    status TEXT NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    resource TEXT NOT NULL,
    last_updated TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS immunizations_key ON immunizations (person_id, npl_id, date);
CREATE INDEX IF NOT EXISTS immunizations_date ON immunizations (date);
CREATE TABLE IF NOT EXISTS identifiers (
    system TEXT NOT NULL,
    value TEXT NOT NULL,
    immunization_id TEXT NOT NULL REFERENCES immunizations (id),
    PRIMARY KEY (system, value)
);
CREATE TABLE IF NOT EXISTS replays (
    client_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    status INTEGER NOT NULL,
    media_type TEXT,
    headers TEXT NOT NULL,
    body BLOB NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (client_id, request_id)
);
CREATE INDEX IF NOT EXISTS replays_created ON replays (created_at);
CREATE TABLE IF NOT EXISTS findings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    immunization_id TEXT NOT NULL REFERENCES immunizations (id),
    identifier_system TEXT NOT NULL,
    identifier_value TEXT NOT NULL,
    code TEXT NOT NULL,
    text TEXT NOT NULL,
    found TEXT NOT NULL,
    UNIQUE (immunization_id, identifier_system, identifier_value, code, found)
);
CREATE INDEX IF NOT EXISTS findings_found ON findings (found, immunization_id);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""
_COLUMNS = (
    "id, version, identifier_system, identifier_value, person_id, npl_id, date, lot, dose, caregiver, "
    "careunit_system, careunit, status, deleted, resource, last_updated"
)
_COLUMN_NAMES = tuple(c.strip() for c in _COLUMNS.split(","))
_I_COLUMNS = ", ".join(f"i.{c}" for c in _COLUMN_NAMES)
_SAVE = f"INSERT OR REPLACE INTO immunizations ({_COLUMNS}) VALUES ({', '.join('?' * len(_COLUMN_NAMES))})"
_ADD_IDENTIFIER = (
    "INSERT INTO identifiers (system, value, immunization_id) VALUES (?, ?, ?) "
    "ON CONFLICT (system, value) DO UPDATE SET immunization_id = excluded.immunization_id"
)
_ADD_FINDING = (
    "INSERT INTO findings (immunization_id, identifier_system, identifier_value, code, text, found) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
_BUMP = (
    "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = value + excluded.value"
)
#: Set-wise reads of one batch go in slices, well under SQLite's limit of bound parameters.
_SLICE = 200


class Record(NamedTuple):
    """The current version of one stored vaccination (a NamedTuple: one is built per stored entry)."""

    id: str
    version: int
    identifier_system: str
    identifier_value: str
    person_id: str
    npl_id: str
    date: str
    lot: str
    dose: int | None
    caregiver: str
    careunit_system: str
    careunit: str
    status: str
    deleted: bool
    resource: dict[str, Any]
    last_updated: str

    def summary(self) -> dict[str, Any]:
        """The admin listing's view of the record."""
        return {
            "id": self.id,
            "identifier_system": self.identifier_system,
            "identifier_value": self.identifier_value,
            "person_id": self.person_id,
            "npl_id": self.npl_id,
            "date": self.date,
            "lot": self.lot,
            "dose": self.dose,
            "version": self.version,
            "deleted": self.deleted,
        }


@dataclass(frozen=True)
class Finding:
    """Something the register found out about a stored vaccination after answering it."""

    id: int
    register_id: str
    identifier_system: str
    identifier_value: str
    code: str
    text: str
    found: str
    deleted: bool

    def row(self) -> dict[str, Any]:
        """One row of ``GET /reports/errors``."""
        return {
            "register_id": self.register_id,
            "identifier": {"system": self.identifier_system, "value": self.identifier_value},
            "code": self.code,
            "text": self.text,
            "found": self.found,
        }

    def summary(self) -> dict[str, Any]:
        """The admin listing's view: the report row plus the finding's id and the record's state."""
        return {"id": self.id, **self.row(), "deleted": self.deleted}


_FINDING_SELECT = (
    "SELECT f.id, f.immunization_id, f.identifier_system, f.identifier_value, f.code, f.text, f.found, i.deleted "
    "FROM findings f JOIN immunizations i ON i.id = f.immunization_id"
)


def _finding(row: sqlite3.Row) -> Finding:
    return Finding(
        id=row["id"],
        register_id=row["immunization_id"],
        identifier_system=row["identifier_system"],
        identifier_value=row["identifier_value"],
        code=row["code"],
        text=row["text"],
        found=row["found"],
        deleted=bool(row["deleted"]),
    )


@dataclass(frozen=True)
class StoredAnswer:
    """An HTTP answer kept for X-Request-ID replay."""

    status: int
    media_type: str | None
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _serialised(method: Callable[Concatenate[Store, _P], _R]) -> Callable[Concatenate[Store, _P], _R]:
    """Run a method under the store's lock: one SQLite connection is shared by all threads."""

    @wraps(method)
    def locked(self: Store, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._lock:
            return method(self, *args, **kwargs)

    return locked


def _record(row: sqlite3.Row) -> Record:
    values = dict(row)
    values.pop("rank", None)
    values["deleted"] = bool(values["deleted"])
    values["resource"] = jsonio.loads_text(values["resource"])
    return Record(**values)


def _ranked(rows: Iterable[sqlite3.Row]) -> list[tuple[int, Record]]:
    """Records with their rowid: duplicate control picks the first of several by it."""
    return [(row["rank"], _record(row)) for row in rows]


def _row(record: Record) -> tuple[Any, ...]:
    """A record as the values of ``_SAVE``, in ``_COLUMNS`` order."""
    return (
        record.id,
        record.version,
        record.identifier_system,
        record.identifier_value,
        record.person_id,
        record.npl_id,
        record.date,
        record.lot,
        record.dose,
        record.caregiver,
        record.careunit_system,
        record.careunit,
        record.status,
        int(record.deleted),
        jsonio.dumps_text(record.resource),
        record.last_updated,
    )


def _slices(items: Collection[Any]) -> Iterator[list[Any]]:
    values = list(items)
    for start in range(0, len(values), _SLICE):
        yield values[start : start + _SLICE]


class Store:
    """SQLite-backed state; safe to share between the server's worker threads."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = str(path) if path is not None else ":memory:"
        self._lock = threading.RLock()
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        if path is not None:
            # WAL: a commit is one append to the log, and a process killed mid-transaction leaves
            # only uncommitted frames, which the next open ignores. NORMAL (not FULL) syncs at
            # checkpoints only: a killed process loses nothing committed (the OS has the pages);
            # only a power cut could lose the last commits, and never half of one.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            # Checkpoint every ~40 MB of log instead of every 4 MB: index pages that consecutive
            # batches touch again are copied back to the database once, not once per batch or
            # two (about a seventh less SQLite work per stored vaccination); the log file stays bounded.
            self._db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)  # idempotent: a file store keeps its data
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @_serialised
    def close(self) -> None:
        """Close the database (a file store keeps everything for the next start)."""
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """One atomic unit of work, serialised with every other; rolled back on error."""
        with self._lock:
            if self._db.in_transaction:  # nested: the outer transaction decides
                yield self
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- vaccinations -------------------------------------------------------------------

    @_serialised
    def get(self, immunization_id: str) -> Record | None:
        """The record with this register id, deleted or not."""
        row = self._db.execute(f"SELECT {_COLUMNS} FROM immunizations WHERE id = ?", (immunization_id,)).fetchone()
        return _record(row) if row else None

    @_serialised
    def mark_deleted(self, immunization_id: str, when: str) -> bool:
        """Mark a live record deleted; False when there is none."""
        cursor = self._db.execute(
            "UPDATE immunizations SET deleted = 1, last_updated = ? WHERE id = ? AND deleted = 0",
            (when, immunization_id),
        )
        return cursor.rowcount == 1

    @_serialised
    def count(
        self, date_conditions: Iterable[tuple[str, str]], careunit: tuple[tuple[str, ...] | None, str] | None
    ) -> int:
        """Live completed vaccinations matching date conditions (operator, ISO date) and care unit.

        ``careunit`` is (systems-or-None, value); the caller maps a system to its equivalents.
        """
        sql = ["SELECT COUNT(*) FROM immunizations WHERE deleted = 0 AND status = 'completed'"]
        params: list[str] = []
        for operator, day in date_conditions:
            if operator not in {"=", ">=", ">", "<=", "<"}:
                raise ValueError(operator)
            sql.append(f"AND date {operator} ?")
            params.append(day)
        if careunit is not None:
            systems, value = careunit
            sql.append("AND careunit = ?")
            params.append(value)
            if systems is not None:
                sql.append(f"AND careunit_system IN ({', '.join('?' * len(systems))})")
                params.extend(systems)
        return int(self._db.execute(" ".join(sql), params).fetchone()[0])

    @_serialised
    def records(self) -> list[Record]:
        """All records in insertion order, deleted ones included (admin listing)."""
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM immunizations ORDER BY rowid").fetchall()
        return [_record(row) for row in rows]

    @_serialised
    def live_count(self) -> int:
        """How many records are not deleted."""
        return int(self._db.execute("SELECT COUNT(*) FROM immunizations WHERE deleted = 0").fetchone()[0])

    # -- a batch at a time ------------------------------------------------------------------
    # One query per kind of look-up for all of a batch's entries, and one executemany per table
    # for its writes: per-entry statements and commits were most of a batch's cost.

    @_serialised
    def records_by_id(self, ids: Collection[str]) -> list[tuple[int, Record]]:
        """The records (deleted ones too) with these ids, each with its rowid."""
        found: list[tuple[int, Record]] = []
        for part in _slices(ids):
            sql = f"SELECT rowid AS rank, {_COLUMNS} FROM immunizations WHERE id IN ({', '.join('?' * len(part))})"
            found += _ranked(self._db.execute(sql, part))
        return found

    @_serialised
    def identifier_targets(self, identifiers: Collection[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The record id each known ``(system, value)`` points to, whether that record is live or not."""
        targets: dict[tuple[str, str], str] = {}
        for part in _slices(identifiers):
            sql = (
                f"WITH k(s, v) AS (VALUES {', '.join(['(?, ?)'] * len(part))}) "
                "SELECT a.system, a.value, a.immunization_id "
                "FROM k JOIN identifiers a ON a.system = k.s AND a.value = k.v"
            )
            for row in self._db.execute(sql, [value for pair in part for value in pair]):
                targets[(row[0], row[1])] = row[2]
        return targets

    @_serialised
    def live_by_keys(self, keys: Collection[tuple[str, str, str]]) -> list[tuple[int, Record]]:
        """Live records with any of these duplicate-control keys (person id, NPL-id, date), with rowids."""
        found: list[tuple[int, Record]] = []
        for part in _slices(keys):
            sql = (
                f"WITH k(p, n, d) AS (VALUES {', '.join(['(?, ?, ?)'] * len(part))}) "
                f"SELECT i.rowid AS rank, {_I_COLUMNS} FROM k JOIN immunizations i "
                "ON i.person_id = k.p AND i.npl_id = k.n AND i.date = k.d WHERE i.deleted = 0"
            )
            found += _ranked(self._db.execute(sql, [value for key in part for value in key]))
        return found

    @_serialised
    def live_doses(self, persons: Collection[str], npl_ids: Collection[str]) -> list[tuple[int, Record]]:
        """Live, completed records of these persons and products (rule 10's doses), with rowids."""
        npl = sorted(npl_ids)
        found: list[tuple[int, Record]] = []
        if not npl:
            return found
        for part in _slices(persons):
            sql = (
                f"SELECT rowid AS rank, {_COLUMNS} FROM immunizations "
                f"WHERE person_id IN ({', '.join('?' * len(part))}) AND npl_id IN ({', '.join('?' * len(npl))}) "
                "AND status = 'completed' AND deleted = 0"
            )
            found += _ranked(self._db.execute(sql, [*part, *npl]))
        return found

    @_serialised
    def write_batch(
        self,
        records: Iterable[Record],
        identifiers: Iterable[tuple[str, str, str]],
        findings: Iterable[tuple[str, str, str, str, str, str]],
        counters: dict[str, int],
    ) -> None:
        """A batch's writes in the order its entries made them: record versions, identifiers
        ``(system, value, record id)``, findings ``(record id, system, value, code, text, found)``
        (the same one twice is kept once) and counter increments. Call inside a transaction."""
        self._db.executemany(_SAVE, map(_row, records))
        self._db.executemany(_ADD_IDENTIFIER, identifiers)
        self._db.executemany(_ADD_FINDING, findings)
        self._db.executemany(_BUMP, counters.items())

    # -- findings -------------------------------------------------------------------------

    @_serialised
    def add_finding(
        self, immunization_id: str, identifier: tuple[str, str], code: str, text: str, found: str
    ) -> Finding:
        """Record a finding; the same finding (record, identifier, code, date) is kept once."""
        system, value = identifier
        self._db.execute(_ADD_FINDING, (immunization_id, system, value, code, text, found))
        row = self._db.execute(
            f"{_FINDING_SELECT} WHERE f.immunization_id = ? AND f.identifier_system = ? "
            "AND f.identifier_value = ? AND f.code = ? AND f.found = ?",
            (immunization_id, system, value, code, found),
        ).fetchone()
        return _finding(row)

    @_serialised
    def findings(self, found_from: str | None = None, found_before: str | None = None) -> list[Finding]:
        """Findings of live records found in [from, before), by date found and register id.

        Without bounds: every finding, deleted records' too (the admin listing).
        """
        if found_from is None or found_before is None:
            sql, params = f"{_FINDING_SELECT} ORDER BY f.id", ()
        else:
            sql = (
                f"{_FINDING_SELECT} WHERE i.deleted = 0 AND f.found >= ? AND f.found < ? "
                "ORDER BY f.found, f.immunization_id, f.id"
            )
            params = (found_from, found_before)
        return [_finding(row) for row in self._db.execute(sql, params).fetchall()]

    # -- counters -------------------------------------------------------------------------

    @_serialised
    def bump(self, name: str, by: int = 1) -> None:
        """Add to a named counter (statistics survive a restart with the rest of the state)."""
        self._db.execute(_BUMP, (name, by))

    @_serialised
    def counters(self) -> dict[str, int]:
        """All counters by name."""
        return {row["name"]: row["value"] for row in self._db.execute("SELECT name, value FROM counters")}

    # -- replay ---------------------------------------------------------------------------

    @_serialised
    def replay(self, client_id: str, request_id: str, max_age: float) -> StoredAnswer | None:
        """The stored answer to this client's request id, if younger than ``max_age`` seconds."""
        row = self._db.execute(
            "SELECT status, media_type, headers, body FROM replays WHERE client_id = ? AND request_id = ? "
            "AND created_at >= ?",
            (client_id, request_id, time.time() - max_age),
        ).fetchone()
        if row is None:
            return None
        return StoredAnswer(row["status"], row["media_type"], bytes(row["body"]), json.loads(row["headers"]))

    @_serialised
    def keep_answer(self, client_id: str, request_id: str, answer: StoredAnswer, max_age: float) -> None:
        """Store an answer for replay and forget answers older than ``max_age`` seconds."""
        now = time.time()
        with self.transaction():
            self._db.execute("DELETE FROM replays WHERE created_at < ?", (now - max_age,))
            self._db.execute(
                "INSERT OR REPLACE INTO replays "
                "(client_id, request_id, status, media_type, headers, body, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    client_id,
                    request_id,
                    answer.status,
                    answer.media_type,
                    json.dumps(answer.headers),
                    answer.body,
                    now,
                ),
            )

    # -- admin ----------------------------------------------------------------------------

    @_serialised
    def reset(self) -> None:
        """Forget everything: vaccinations, identifiers, findings, replays, counters."""
        with self.transaction():
            for table in ("findings", "identifiers", "immunizations", "replays", "counters"):
                self._db.execute(f"DELETE FROM {table}")
