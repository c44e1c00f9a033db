"""The register as the entries of one batch see it: the store when the batch began, plus what
the batch's earlier entries wrote.

Entries are processed strictly in order and a later entry must see what an earlier one stored
(a conditional create of the same identifier twice, a dose interval within one batch). Asking
SQLite entry by entry, with a commit each, cost eight or nine statements per entry. Instead the
batch's look-ups are read set-wise up front (:meth:`BatchView.load`), its writes are collected
here and answered from memory, and :meth:`BatchView.flush` writes them with one ``executemany``
per table, inside the one transaction the batch holds from start to end (so nothing else
changes the store underneath it).

Each look-up answers exactly what the SQL of the entry-by-entry register answered (checked
against it on random batch sequences):
:meth:`find_by_key` the first live record *by rowid* (``INSERT OR REPLACE`` gives a written
version a new rowid after every existing one, so written records rank after all stored ones,
in the order written), :meth:`find_by_identifier` the live record an identifier points to,
:meth:`dose_dates` the person's live completed COVID-19 doses. Anything not loaded up front is
read from the store on first use.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable

    from nvr_emulator.store import Record, Store

Key = tuple[str, str, str]
"""Duplicate control's key: (person id, NPL-id, date)."""
Identifier = tuple[str, str]
"""An Immunization identifier: (system, value)."""
Finding = tuple[str, str, str, str, str, str]
"""(record id, identifier system, identifier value, code, text, date found)."""

#: Rank of the first record written by the batch: after every rowid the store has handed out.
_WRITTEN = 1 << 62


def key_of(record: Record) -> Key:
    """The duplicate-control key of a record."""
    return (record.person_id, record.npl_id, record.date)


class BatchView:
    """Look-ups for one batch over the store and the batch's own writes; see the module docstring."""

    def __init__(self, store: Store, covid19_npl_ids: frozenset[str]) -> None:
        self.store = store
        self.covid19_npl_ids = covid19_npl_ids
        self._records: dict[str, Record | None] = {}  # None: no such id in the store
        self._rank: dict[str, int] = {}
        self._by_key: defaultdict[Key, set[str]] = defaultdict(set)
        self._by_person: defaultdict[str, set[str]] = defaultdict(set)
        self._targets: dict[Identifier, str | None] = {}  # identifier -> record id, None: unknown
        self._keys_loaded: set[Key] = set()
        self._persons_loaded: set[str] = set()
        self.written: list[Record] = []
        self.identifiers: list[tuple[str, str, str]] = []
        self.findings: list[Finding] = []

    # -- loading ------------------------------------------------------------------------------

    def _know(self, found: Iterable[tuple[int, Record]]) -> None:
        """Take records read from the store; a record the batch already holds keeps its version."""
        for rank, record in found:
            if record.id not in self._records:
                self._records[record.id] = record
                self._rank[record.id] = rank
            self._by_key[key_of(record)].add(record.id)
            self._by_person[record.person_id].add(record.id)

    def load(
        self,
        ids: Collection[str] = (),
        identifiers: Collection[Identifier] = (),
        keys: Collection[Key] = (),
        persons: Collection[str] = (),
    ) -> None:
        """Read from the store, set-wise, what the batch's entries will look up: records by id,
        identifiers, duplicate-control keys, and persons' COVID-19 doses."""
        identifiers = {i for i in identifiers if i not in self._targets}
        targets = self.store.identifier_targets(identifiers) if identifiers else {}
        for identifier in identifiers:
            self._targets[identifier] = targets.get(identifier)
        wanted = {i for i in (*ids, *targets.values()) if i not in self._records}
        if wanted:
            self._know(self.store.records_by_id(wanted))
            for missing in wanted - self._records.keys():
                self._records[missing] = None
        keys = set(keys) - self._keys_loaded
        if keys:
            self._know(self.store.live_by_keys(keys))
            self._keys_loaded |= keys
        persons = set(persons) - self._persons_loaded
        if persons:
            self._know(self.store.live_doses(persons, self.covid19_npl_ids))
            self._persons_loaded |= persons

    # -- look-ups -----------------------------------------------------------------------------

    def get(self, record_id: str) -> Record | None:
        """The record with this id, deleted or not."""
        if record_id not in self._records:
            self.load(ids=(record_id,))
        return self._records[record_id]

    def find_by_identifier(self, system: str, value: str) -> Record | None:
        """The live record this identifier (or alias) points to."""
        identifier = (system, value)
        if identifier not in self._targets:
            self.load(identifiers=(identifier,))
        target = self._targets[identifier]
        record = self.get(target) if target is not None else None
        return record if record is not None and not record.deleted else None

    def find_by_key(self, key: Key) -> Record | None:
        """The first live record, by rowid, with this duplicate-control key."""
        if key not in self._keys_loaded:
            self.load(keys=(key,))
        first: Record | None = None
        for record_id in self._by_key.get(key, ()):
            record = self._records[record_id]
            if record is None or record.deleted or key_of(record) != key:
                continue  # the batch deleted nothing, but it may have moved the record to another key
            if first is None or self._rank[record_id] < self._rank[first.id]:
                first = record
        return first

    def dose_dates(self, person_id: str, exclude_id: str | None = None) -> list[str]:
        """Dates of the person's live, completed COVID-19 doses but ``exclude_id``."""
        if person_id not in self._persons_loaded:
            self.load(persons=(person_id,))
        dates = []
        for record_id in self._by_person.get(person_id, ()):
            record = self._records[record_id]
            if (
                record is not None
                and record.person_id == person_id
                and record.npl_id in self.covid19_npl_ids
                and record.status == "completed"
                and not record.deleted
                and record.id != (exclude_id or "")
            ):
                dates.append(record.date)
        return dates

    # -- writes -------------------------------------------------------------------------------

    def save(self, record: Record, finding: Finding | None = None) -> None:
        """Store a record version and make its identifier (``identifier[0]``) point to it; with a
        finding about it. Later look-ups of the batch see it; :meth:`flush` writes it."""
        self._records[record.id] = record
        self._rank[record.id] = _WRITTEN + len(self.written)
        self._by_key[key_of(record)].add(record.id)
        self._by_person[record.person_id].add(record.id)
        self._targets[(record.identifier_system, record.identifier_value)] = record.id
        self.written.append(record)
        self.identifiers.append((record.identifier_system, record.identifier_value, record.id))
        if finding is not None:
            self.findings.append(finding)

    def flush(self, counters: dict[str, int]) -> None:
        """Write the batch's records, identifiers, findings and counter increments to the store."""
        self.store.write_batch(self.written, self.identifiers, self.findings, counters)
