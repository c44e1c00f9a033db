"""The register's behaviour: entries in, answers out, over the store and the catalog.

Entries are processed strictly in request order, each in its own transaction, so a later
entry of a batch sees what an earlier one stored. The rule order is the contract's:
structure (0), ``ifNoneExist`` (1), rules 2–9 (:func:`rules.check_vaccination`), dose
interval (10), duplicate control (11).

Every stored version (created or updated) is also looked up in the population register
(:mod:`nvr_emulator.population`); a miss is no part of the answer but a finding, reported
later by :meth:`Register.report` (``GET /reports/errors``).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nvr_emulator.outcomes import FINDING_TEXTS, PERSON_NOT_FOUND, STATUS_LINES, TRANSIENT, Problem, problem
from nvr_emulator.population import is_registered
from nvr_emulator.rules import (
    HSA_SYSTEMS,
    STRUCTURE,
    CheckedVaccination,
    EntryRequest,
    check_vaccination,
    dose_interval_ok,
    read_entry_request,
    read_vaccination,
)
from nvr_emulator.store import Finding, Record, Store

if TYPE_CHECKING:
    from collections.abc import Callable

    from nvr_emulator.catalog import Catalog

_DATE_PARAM = re.compile(r"(eq|ge|gt|le|lt)?([0-9]{4}-[0-9]{2}-[0-9]{2})")
_SQL_OPERATORS = {"eq": "=", "ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


@dataclass(frozen=True)
class EntryAnswer:
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


class _SilentDrop(Exception):
    """Raised inside an entry's transaction to roll back a write that is answered anyway."""

    def __init__(self, answer: EntryAnswer) -> None:
        super().__init__(answer.status)
        self.answer = answer


@dataclass(frozen=True)
class BatchResult:
    """A processed batch: the ``batch-response`` and the entries silently dropped."""

    bundle: dict[str, Any]
    dropped: list[int]
    dropped_ids: list[str]


def _refused(found: Problem, record: Record | None = None) -> EntryAnswer:
    return EntryAnswer(found.status, record, found, found.nvr_code or "")


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
        answers = []
        dropped: list[int] = []
        for index, entry in enumerate(entries):
            if index in transient:
                answers.append(self.transient_entry())
                continue
            answer, was_dropped = self._process_entry(entry, silent_drop=index in silent_drop)
            answers.append(answer)
            if was_dropped:
                dropped.append(index)
        with self.store.transaction():
            self.store.bump("posts")
        bundle = {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "type": "batch-response",
            "timestamp": now_instant(),
            "entry": [answer.response_entry() for answer in answers],
        }
        ids = [answers[index].record.id for index in dropped if answers[index].record is not None]
        return BatchResult(bundle, dropped, ids)

    def process_entry(self, entry: Any) -> EntryAnswer:
        """One entry in one transaction, with its statistics."""
        return self._process_entry(entry)[0]

    def _process_entry(self, entry: Any, silent_drop: bool = False) -> tuple[EntryAnswer, bool]:
        """One entry; with ``silent_drop``, a creation is rolled back but answered (and counted)
        as if stored. Returns the answer and whether it was dropped."""
        try:
            with self.store.transaction():
                request = read_entry_request(entry)
                if isinstance(request, Problem):
                    answer = _refused(request)
                elif request.method == "PUT":
                    answer = self._update(request, entry.get("resource"))
                else:
                    answer = self._create(request, entry.get("resource"))
                if silent_drop and answer.status == 201:
                    raise _SilentDrop(answer)
                self.store.bump("entries")
                self.store.bump(f"outcome:{answer.key}")
        except _SilentDrop as drop:
            # The record, its identifier and its findings are gone with the rollback; the client
            # is told what it would have been told, and the statistics count what it was told.
            with self.store.transaction():
                self.store.bump("entries")
                self.store.bump(f"outcome:{drop.answer.key}")
            return drop.answer, True
        return answer, False

    def transient_entry(self) -> EntryAnswer:
        """An entry refused by fault injection: counted, not processed."""
        with self.store.transaction():
            self.store.bump("entries")
            self.store.bump(f"outcome:{TRANSIENT.nvr_code}")
        return _refused(TRANSIENT)

    def _create(self, request: EntryRequest, resource: Any) -> EntryAnswer:
        vaccination = read_vaccination(resource)  # 0
        if isinstance(vaccination, Problem):
            return _refused(vaccination)
        if request.if_none_exist is not None:  # 1
            if request.if_none_exist != (vaccination.identifier_system, vaccination.identifier_value):
                return _refused(STRUCTURE.at("Bundle.entry.request.ifNoneExist"))
            existing = self.store.find_by_identifier(*request.if_none_exist)
            if existing is not None:
                return _refused(problem("DUPLICATE-IDENTIFIER"), existing)
        checked = check_vaccination(vaccination, self.catalog, self.today())  # 2–9
        if isinstance(checked, Problem):
            return _refused(checked)
        if not self._interval_ok(checked, exclude_id=None):  # 10
            return _refused(problem("DOSE-INTERVAL"))
        existing = self.store.find_by_key(checked.person.value, checked.product.npl_id, checked.date.isoformat())
        if existing is None:  # 11
            return EntryAnswer(201, self._write(None, checked), None, "CREATED")
        if same_content(existing, checked):
            # The care unit's second registration is not in the register: its identifier is not kept.
            return _refused(problem("DUPLICATE"), existing)
        return _refused(problem("UPDATED-EXISTING"), self._write(existing, checked))

    def _update(self, request: EntryRequest, resource: Any) -> EntryAnswer:
        existing = self.store.get(request.target_id or "")
        if existing is None or existing.deleted:
            return _refused(problem("UNKNOWN-ID"))
        vaccination = read_vaccination(resource)
        if isinstance(vaccination, Problem):
            return _refused(vaccination)
        if resource.get("id") not in (None, existing.id):
            return _refused(STRUCTURE.at("Immunization.id"))
        checked = check_vaccination(vaccination, self.catalog, self.today())
        if isinstance(checked, Problem):
            return _refused(checked)
        if not self._interval_ok(checked, exclude_id=existing.id):
            return _refused(problem("DOSE-INTERVAL"))
        return EntryAnswer(200, self._write(existing, checked), None, "UPDATED")

    def _interval_ok(self, checked: CheckedVaccination, exclude_id: str | None) -> bool:
        """Rule 10; a dose marked entered-in-error was not given, so it has no interval to keep."""
        if not checked.product.is_covid19 or checked.status != "completed":
            return True
        others = self.store.dose_dates(checked.person.value, self.catalog.covid19_npl_ids, exclude_id)
        return dose_interval_ok(checked.date, map(dt.date.fromisoformat, others), self.dose_interval_days)

    def _write(self, existing: Record | None, checked: CheckedVaccination) -> Record:
        """Store a new record (version 1) or the next version of ``existing``; keep the identifier."""
        record_id = existing.id if existing else str(uuid.uuid4())
        version = existing.version + 1 if existing else 1
        when = now_instant()
        resource = dict(checked.resource)
        resource["id"] = record_id
        meta = resource.get("meta") if isinstance(resource.get("meta"), dict) else {}
        resource["meta"] = {**meta, "versionId": str(version), "lastUpdated": when}
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
            last_updated=when,
        )
        self.store.save(record)
        self.store.add_identifier(checked.identifier_system, checked.identifier_value, record_id)
        if not is_registered(checked.person.value):
            found = self.today() + dt.timedelta(days=self.findings_delay_days)
            self.store.add_finding(
                record_id,
                (checked.identifier_system, checked.identifier_value),
                PERSON_NOT_FOUND,
                FINDING_TEXTS[PERSON_NOT_FOUND],
                found.isoformat(),
            )
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
