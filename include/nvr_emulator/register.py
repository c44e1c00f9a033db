"""The register's behaviour: entries in, answers out, over the store and the catalog.

Entries are processed strictly in request order, so a later entry of a batch sees what an
earlier one stored. The rule order is the contract's: structure (0), ``ifNoneExist`` (1),
rules 2–9 (:func:`rules.check_vaccination`), dose interval (10), duplicate control (11).

A batch is one transaction. Its pure checks (rules 0 and 2–9) run first, entry by entry; the
look-ups the remaining rules need are then read from the store set-wise and its writes
collected in a :class:`~nvr_emulator.view.BatchView`, which answers later entries as the store
would have after the earlier ones, and writes everything at the end with one ``executemany``
per table. That is the same register as one transaction per entry, at a fraction of the cost;
a crash now loses a whole unanswered batch instead of part of it.

Every stored version (created or updated) is also looked up in the population register
(:mod:`nvr_emulator.population`); a miss is no part of the answer but a finding, reported
later by :meth:`Register.report` (``GET /reports/errors``).
"""

from __future__ import annotations

import datetime as dt
import random
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from nvr_emulator.outcomes import FINDING_TEXTS, PERSON_NOT_FOUND, STATUS_LINES, TRANSIENT, Problem, problem
from nvr_emulator.population import is_registered
from nvr_emulator.rules import (
    HSA_SYSTEMS,
    STRUCTURE,
    CheckedVaccination,
    EntryRequest,
    Vaccination,
    check_vaccination,
    dose_interval_ok,
    read_entry_request,
    read_vaccination,
)
from nvr_emulator.store import Finding, Record, Store
from nvr_emulator.view import BatchView

if TYPE_CHECKING:
    from collections.abc import Callable

    from nvr_emulator.catalog import Catalog

#: The RFC 9562 variant bits (10) over one random hex digit's lower two bits.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
_DATE_PARAM = re.compile(r"(eq|ge|gt|le|lt)?([0-9]{4}-[0-9]{2}-[0-9]{2})")
_SQL_OPERATORS = {"eq": "=", "ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


class EntryAnswer(NamedTuple):
    """What happened to one entry: status, the record concerned, what to say, statistics key."""

    status: int
    record: Record | None = None
    problem: Problem | None = None
    key: str = ""

    def response_entry(self) -> dict[str, Any]:
        """The entry of the ``batch-response`` Bundle."""
        response: dict[str, Any] = {"status": STATUS_LINES[self.status]}
        if self.record is not None:
            response["location"] = f"Immunization/{self.record.id}/_history/{self.record.version}"
            response["etag"] = f'W/"{self.record.version}"'
            response["lastModified"] = self.record.last_updated
        if self.problem is not None:
            response["outcome"] = self.problem.outcome()
        return {"response": response}


@dataclass(frozen=True)
class BatchResult:
    """A processed batch: the ``batch-response`` and the entries silently dropped."""

    bundle: dict[str, Any]
    dropped: list[int]
    dropped_ids: list[str]


class _Read(NamedTuple):
    """One entry after the checks that need nothing but the entry (rules 0, 2–9), in advance.

    ``vaccination`` and ``checked`` are None where the contract's order never gets to them.
    """

    request: EntryRequest | Problem
    vaccination: Vaccination | Problem | None = None
    checked: CheckedVaccination | Problem | None = None


class _Batch(NamedTuple):
    """What one batch's entries share: the view of the store, today, and the write time."""

    view: BatchView
    today: dt.date
    found: str  # the date a PERSON-NOT-FOUND finding made now is found
    when: str  # meta.lastUpdated of every version the batch writes


def _refused(found: Problem, record: Record | None = None) -> EntryAnswer:
    return EntryAnswer(found.status, record, found, found.nvr_code or "")


def new_record_id() -> str:
    """A new register id: a UUIDv7 (RFC 9562), a millisecond timestamp then random bits.

    Time-ordered rather than random (uuid4) so that new records land at the end of the id
    index instead of on a random page each: a batch then rewrites a few index pages at commit
    instead of a hundred: about a fifth of SQLite's cost of storing it.
    """
    stamp = f"{time.time_ns() // 1_000_000:012x}"
    bits = f"{random.getrandbits(80):020x}"  # an id, not a secret: no system call per record
    return f"{stamp[:8]}-{stamp[8:12]}-7{bits[:3]}-{_VARIANT[bits[3]]}{bits[4:7]}-{bits[7:19]}"


def now_instant() -> str:
    """A FHIR ``instant`` for meta.lastUpdated (UTC, milliseconds)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def same_content(record: Record, checked: CheckedVaccination) -> bool:
    """Duplicate control: a resend is a duplicate when nothing the register keeps changed."""
    return (
        record.lot == checked.lot
        and record.dose == checked.dose
        and record.caregiver == checked.caregiver
        and record.careunit == checked.careunit
        and record.status == checked.status
    )


def _key(checked: CheckedVaccination) -> tuple[str, str, str]:
    return (checked.person.value, checked.product.npl_id, checked.date.isoformat())


class Register:
    """Processes batches, deletes and searches the way the NVR API answers them."""

    def __init__(
        self,
        store: Store,
        catalog: Catalog,
        dose_interval_days: int,
        today: Callable[[], dt.date],
        findings_delay_days: int = 0,
    ):
        self.store = store
        self.catalog = catalog
        self.dose_interval_days = dose_interval_days
        self.today = today
        self.findings_delay_days = findings_delay_days

    # -- batch ----------------------------------------------------------------------------

    def process_bundle(
        self,
        entries: list[Any],
        transient: frozenset[int] = frozenset(),
        silent_drop: frozenset[int] = frozenset(),
    ) -> dict[str, Any]:
        """Answer a checked batch with a ``batch-response``, one entry per request entry, in order.

        Entries whose index is in ``transient`` (fault injection) are answered 503 ``TRANSIENT``
        without being processed: nothing of them is stored. Entries in ``silent_drop`` that would
        be created are answered 201 as usual, but nothing of them is stored.
        """
        return self.process_batch(entries, transient, silent_drop).bundle

    def process_batch(
        self,
        entries: list[Any],
        transient: frozenset[int] = frozenset(),
        silent_drop: frozenset[int] = frozenset(),
    ) -> BatchResult:
        """:meth:`process_bundle`, also telling which entries were silently dropped."""
        today = self.today()
        reads = [None if index in transient else self._read(entry, today) for index, entry in enumerate(entries)]
        answers: list[EntryAnswer] = []
        dropped: list[int] = []
        counters: Counter[str] = Counter({"posts": 1, "entries": len(entries)})
        with self.store.transaction():
            view = BatchView(self.store, self.catalog.covid19_npl_ids)
            self._load(view, reads)
            found = today + dt.timedelta(days=self.findings_delay_days)
            batch = _Batch(view, today, found.isoformat(), now_instant())
            for index, read in enumerate(reads):
                if read is None:
                    answer, was_dropped = _refused(TRANSIENT), False
                else:
                    answer, was_dropped = self._apply(batch, read, silent=index in silent_drop)
                answers.append(answer)
                counters[f"outcome:{answer.key}"] += 1
                if was_dropped:
                    dropped.append(index)
            view.flush(counters)
        bundle = {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "type": "batch-response",
            "timestamp": now_instant(),
            "entry": [answer.response_entry() for answer in answers],
        }
        ids = [answers[index].record.id for index in dropped if answers[index].record is not None]
        return BatchResult(bundle, dropped, ids)

    def _read(self, entry: Any, today: dt.date) -> _Read:
        """Rules 0 and 2–9 of one entry: they depend on the entry alone, so they run up front."""
        request = read_entry_request(entry)
        if isinstance(request, Problem):
            return _Read(request)
        vaccination = read_vaccination(entry.get("resource"))
        if isinstance(vaccination, Problem):
            return _Read(request, vaccination)
        if request.method == "PUT" and vaccination.resource.get("id") not in (None, request.target_id):
            return _Read(request, vaccination)  # STRUCTURE Immunization.id, once the id is known
        if request.if_none_exist not in (None, (vaccination.identifier_system, vaccination.identifier_value)):
            return _Read(request, vaccination)  # STRUCTURE ifNoneExist
        return _Read(request, vaccination, check_vaccination(vaccination, self.catalog, today))

    def _load(self, view: BatchView, reads: list[_Read | None]) -> None:
        """Read up front, set-wise, what the batch's entries will look up in the store."""
        ids, identifiers, keys, persons = set(), set(), set(), set()
        for read in reads:
            request = read.request if read is not None else None
            if not isinstance(request, EntryRequest):
                continue
            if request.target_id is not None:
                ids.add(request.target_id)
            if request.if_none_exist is not None:
                identifiers.add(request.if_none_exist)
            checked = read.checked if read is not None else None
            if isinstance(checked, CheckedVaccination):
                if request.method == "POST":
                    keys.add(_key(checked))
                if checked.product.is_covid19 and checked.status == "completed":
                    persons.add(checked.person.value)
        view.load(ids, identifiers, keys, persons)

    def _apply(self, batch: _Batch, read: _Read, silent: bool) -> tuple[EntryAnswer, bool]:
        """The rules that need the register's contents, in the contract's order; with ``silent``,
        a creation is answered (and counted) as stored but not written. Returns the answer and
        whether it was dropped."""
        request = read.request
        if isinstance(request, Problem):
            return _refused(request), False
        if request.method == "PUT":
            return self._update(batch, request, read), False
        return self._create(batch, request, read, silent)

    def _create(self, batch: _Batch, request: EntryRequest, read: _Read, silent: bool) -> tuple[EntryAnswer, bool]:
        vaccination = read.vaccination
        if isinstance(vaccination, Problem) or vaccination is None:  # 0
            return _refused(vaccination or STRUCTURE), False
        if request.if_none_exist is not None:  # 1
            if request.if_none_exist != (vaccination.identifier_system, vaccination.identifier_value):
                return _refused(STRUCTURE.at("Bundle.entry.request.ifNoneExist")), False
            existing = batch.view.find_by_identifier(*request.if_none_exist)
            if existing is not None:
                return _refused(problem("DUPLICATE-IDENTIFIER"), existing), False
        checked = read.checked
        if not isinstance(checked, CheckedVaccination):  # 2–9
            return _refused(checked or STRUCTURE), False
        if not self._interval_ok(batch, checked, exclude_id=None):  # 10
            return _refused(problem("DOSE-INTERVAL")), False
        existing = batch.view.find_by_key(_key(checked))
        if existing is None:  # 11
            # A silently dropped creation is answered as stored, but nothing of it is written.
            return EntryAnswer(201, self._write(batch, None, checked, keep=not silent), None, "CREATED"), silent
        if same_content(existing, checked):
            # The care unit's second registration is not in the register: its identifier is not kept.
            return _refused(problem("DUPLICATE"), existing), False
        return _refused(problem("UPDATED-EXISTING"), self._write(batch, existing, checked)), False

    def _update(self, batch: _Batch, request: EntryRequest, read: _Read) -> EntryAnswer:
        existing = batch.view.get(request.target_id or "")
        if existing is None or existing.deleted:
            return _refused(problem("UNKNOWN-ID"))
        vaccination = read.vaccination
        if isinstance(vaccination, Problem) or vaccination is None:
            return _refused(vaccination or STRUCTURE)
        if vaccination.resource.get("id") not in (None, existing.id):
            return _refused(STRUCTURE.at("Immunization.id"))
        checked = read.checked
        if not isinstance(checked, CheckedVaccination):
            return _refused(checked or STRUCTURE)
        if not self._interval_ok(batch, checked, exclude_id=existing.id):
            return _refused(problem("DOSE-INTERVAL"))
        return EntryAnswer(200, self._write(batch, existing, checked), None, "UPDATED")

    def _interval_ok(self, batch: _Batch, checked: CheckedVaccination, exclude_id: str | None) -> bool:
        """Rule 10; a dose marked entered-in-error was not given, so it has no interval to keep."""
        if not checked.product.is_covid19 or checked.status != "completed":
            return True
        others = batch.view.dose_dates(checked.person.value, exclude_id)
        return dose_interval_ok(checked.date, map(dt.date.fromisoformat, others), self.dose_interval_days)

    def _write(self, batch: _Batch, existing: Record | None, checked: CheckedVaccination, keep: bool = True) -> Record:
        """A new record (version 1) or the next version of ``existing``, with its identifier and,
        for a person the population register lacks, a finding; stored unless not ``keep``."""
        record_id = existing.id if existing else new_record_id()
        version = existing.version + 1 if existing else 1
        resource = dict(checked.resource)
        resource["id"] = record_id
        meta = resource.get("meta") if isinstance(resource.get("meta"), dict) else {}
        resource["meta"] = {**meta, "versionId": str(version), "lastUpdated": batch.when}
        record = Record(
            id=record_id,
            version=version,
            identifier_system=checked.identifier_system,
            identifier_value=checked.identifier_value,
            person_id=checked.person.value,
            npl_id=checked.product.npl_id,
            date=checked.date.isoformat(),
            lot=checked.lot,
            dose=checked.dose,
            caregiver=checked.caregiver,
            careunit_system=checked.careunit_system,
            careunit=checked.careunit,
            status=checked.status,
            deleted=False,
            resource=resource,
            last_updated=batch.when,
        )
        if keep:
            finding = None
            if not is_registered(checked.person.value):
                identifier = (checked.identifier_system, checked.identifier_value)
                finding = (record_id, *identifier, PERSON_NOT_FOUND, FINDING_TEXTS[PERSON_NOT_FOUND], batch.found)
            batch.view.save(record, finding)
        return record

    # -- single-resource calls -------------------------------------------------------------

    def read(self, immunization_id: str) -> Record | None:
        """The live record with this id (deleted ones are gone for clients)."""
        record = self.store.get(immunization_id)
        return record if record is not None and not record.deleted else None

    def delete(self, immunization_id: str) -> bool:
        """Mark a live record deleted (kept for audit); False if there is none."""
        with self.store.transaction():
            deleted = self.store.mark_deleted(immunization_id, now_instant())
            self.store.bump("deletes" if deleted else "delete-unknown")
        return deleted

    def count(self, dates: list[str], location: str | None) -> int | Problem:
        """``_summary=count`` search: live completed vaccinations by date and care unit."""
        conditions = []
        for param in dates:
            match = _DATE_PARAM.fullmatch(param)
            if match is None:
                return Problem(400, "error", "value", None, "Sökparametern date har fel format", ("date",))
            conditions.append((_SQL_OPERATORS[match.group(1) or "eq"], match.group(2)))
        careunit: tuple[tuple[str, ...] | None, str] | None = None
        if location is not None:
            system, bar, value = location.partition("|") if "|" in location else ("", "", location)
            if not value:
                return Problem(
                    400,
                    "error",
                    "value",
                    None,
                    "Sökparametern location.identifier har fel format",
                    ("location.identifier",),
                )
            # Both HSA systems name the same ids, so either finds a care unit stored under the other.
            systems: tuple[str, ...] | None = None
            if bar and system:
                systems = tuple(sorted(HSA_SYSTEMS)) if system in HSA_SYSTEMS else (system,)
            careunit = (systems, value)
        return self.store.count(conditions, careunit)

    # -- later findings --------------------------------------------------------------------

    def report(self, found_from: dt.date, found_before: dt.date) -> dict[str, Any]:
        """``GET /reports/errors``: findings of live records found in [from, to), up to today.

        A finding dated after the emulator's today (``--findings-delay-days``) is not found yet.
        """
        upper = min(found_before, self.today() + dt.timedelta(days=1))
        rows = self.store.findings(found_from.isoformat(), upper.isoformat()) if upper > found_from else []
        return {
            "from": found_from.isoformat(),
            "to": found_before.isoformat(),
            "rows": [finding.row() for finding in rows],
        }

    def add_finding(self, record: Record, code: str, text: str, found: dt.date) -> Finding:
        """A finding about a stored record under its current identifier (``POST /admin/findings``)."""
        with self.store.transaction():
            return self.store.add_finding(
                record.id, (record.identifier_system, record.identifier_value), code, text, found.isoformat()
            )

    def stats(self) -> dict[str, Any]:
        """Counters for tests: live records, processed posts and entries, outcomes by key."""
        counters = self.store.counters()
        return {
            "immunizations": self.store.live_count(),
            "posts": counters.get("posts", 0),
            "entries": counters.get("entries", 0),
            "deletes": counters.get("deletes", 0),
            "by_outcome": {
                name.removeprefix("outcome:"): value
                for name, value in sorted(counters.items())
                if name.startswith("outcome:")
            },
        }
