"""Monthly reconciliation: every vaccination the sources say was given in a month, set against the
ledger and, where the register offers it, the register's own count.

The sources are read afresh (by vaccination date, late registrations included), so the check does
not trust the ledger to know what it should contain. Each source record falls in exactly one class;
a record the ledger never saw, although its day has been reported, is `missing`: the most serious
finding. Only counts, record ids and keyed hashes leave this module.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime

import sqlalchemy as sa

from vaxreport.ledger import schema as s
from vaxreport.ledger.store import now_text, version_hash
from vaxreport.privacy import person_key
from vaxreport.sources.mapping import to_canonical
from vaxreport.window import STOCKHOLM

log = logging.getLogger(__name__)

CLASSES = (
    "accepted",
    "duplicate",
    "rejected_local",
    "rejected_register",
    "excluded",
    "voided",
    "failed_or_pending",
    "missing",
)
SERIOUS = ("missing",)
_LEDGER_CLASS = {
    s.ACCEPTED: "accepted",
    s.DUPLICATE: "duplicate",
    s.REJECTED_LOCAL: "rejected_local",
    s.REJECTED_REGISTER: "rejected_register",
    s.EXCLUDED: "excluded",
    s.FAILED: "failed_or_pending",
    s.READY: "failed_or_pending",
    s.SUBMITTED: "failed_or_pending",
    s.EXTRACTED: "failed_or_pending",
    s.SUPERSEDED: "failed_or_pending",
}


def month_bounds(first: date) -> tuple[date, date]:
    """[first day, first day of the next month)."""
    first = first.replace(day=1)
    following = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
    return first, following


def previous_month(logical: datetime) -> date:
    """A run early in a month reconciles the calendar month before it (Stockholm time): Airflow 3's
    cron timetable gives a run a point, not an interval, so the month is computed here."""
    local = logical.astimezone(STOCKHOLM).date()
    return month_bounds(date(local.year - (local.month == 1), (local.month - 2) % 12 + 1, 1))[0]


@dataclass
class SourceRecord:
    source: str
    record_id: str
    caregiver_hsa_id: str
    caregiver_name: str
    care_unit_hsa_id: str
    care_unit_name: str
    vaccine: str
    person_key: str
    klass: str = ""
    held: bool = False  # the register holds it (accepted, or stored and found at fault later)


@dataclass
class Reconciliation:
    month: date
    records: list[SourceRecord] = field(default_factory=list)
    register_counts: dict[str, int | None] = field(default_factory=dict)  # care unit HSA-id -> count
    failed_sources: list[str] = field(default_factory=list)

    def class_counts(self) -> dict[str, int]:
        counts = Counter(dict.fromkeys(CLASSES, 0))
        counts.update(r.klass for r in self.records)
        return dict(counts)

    def unit_differences(self) -> list[dict]:
        """Per care unit: what the register should hold against the register's own count.

        A surplus at the register is explained up to the unit's missing records (the ledger lost
        them; the register may well have them); a shortfall is never explained: the register lost
        records we were told it had stored.
        """
        held = Counter(r.care_unit_hsa_id for r in self.records if r.held)
        missing = Counter(r.care_unit_hsa_id for r in self.records if r.klass == "missing")
        names = {r.care_unit_hsa_id: (r.caregiver_name, r.care_unit_name) for r in self.records}
        out = []
        for unit in sorted(set(held) | set(self.register_counts)):
            theirs = self.register_counts.get(unit)
            difference = None if theirs is None else theirs - held.get(unit, 0)
            if difference is None:
                unexplained = 0
            elif difference < 0:
                unexplained = -difference
            else:
                unexplained = max(0, difference - missing.get(unit, 0))
            out.append(
                {
                    "caregiver": names.get(unit, ("", ""))[0],
                    "care_unit_hsa_id": unit,
                    "care_unit": names.get(unit, ("", ""))[1],
                    "held": held.get(unit, 0),
                    "register_count": theirs,
                    "difference": difference,
                    "missing": missing.get(unit, 0),
                    "unexplained": unexplained,
                }
            )
        return out

    def unexplained(self) -> int:
        return sum(d["unexplained"] for d in self.unit_differences())


def classify_source(
    engine_source: sa.Engine,
    ledger: sa.Engine,
    kind,
    system_uri: str,
    first: date,
    following: date,
    last_reported_day: str | None,
) -> list[SourceRecord]:
    """Every record of one source given in [first, following), each in its class."""
    with engine_source.connect() as conn:
        raw_rows = [
            dict(r)
            for r in conn.execute(sa.text(kind.sql("month.sql")), kind.month_params(first, following)).mappings()
        ]
    canonical = [(to_canonical(kind, row, system_uri), row.get("changed_at")) for row in raw_rows]
    ids = [c["source_record_id"] for c, _ in canonical if c["source_record_id"]]
    versions = _ledger_versions(ledger, system_uri, ids)
    out = []
    for record, changed_at in canonical:
        rid = record["source_record_id"] or ""
        known = versions.get(rid, {})
        klass = _classify(record, {h: v[0] for h, v in known.items()}, _change_day(changed_at), last_reported_day)
        state, register_id = known.get(version_hash(record), (None, None))
        held = record["record_status"] != "entered-in-error" and (
            state == s.ACCEPTED or (state == s.REJECTED_REGISTER and register_id is not None)
        )
        out.append(
            SourceRecord(
                source=system_uri,
                record_id=rid,
                caregiver_hsa_id=record["caregiver_hsa_id"] or "",
                caregiver_name=record["caregiver_name"] or "",
                care_unit_hsa_id=record["care_unit_hsa_id"] or "",
                care_unit_name=record["care_unit_name"] or "",
                vaccine=record["vaccine_name"] or record["npl_id"] or "",
                person_key=person_key(record["person_id"] or ""),
                klass=klass,
                held=held,
            )
        )
    return out


def _classify(record: dict, versions: dict[str, str], changed_day: str | None, last_reported: str | None) -> str:
    current = versions.get(version_hash(record))
    if current is not None:
        if record["record_status"] == "entered-in-error":
            return "voided"
        return _LEDGER_CLASS.get(current, "failed_or_pending")
    if changed_day and last_reported and changed_day > last_reported:
        return "failed_or_pending"  # registered or changed after the last reported day: not due yet
    if record["record_status"] == "entered-in-error":
        return "voided"  # voided before anyone reported it: nothing is owed to the register
    return "missing"


def _change_day(changed_at) -> str | None:
    if changed_at is None:
        return None
    if isinstance(changed_at, datetime):
        aware = changed_at if changed_at.tzinfo else changed_at.replace(tzinfo=STOCKHOLM)
        return aware.astimezone(STOCKHOLM).date().isoformat()
    return str(changed_at)[:10]


def _ledger_versions(ledger: sa.Engine, source: str, record_ids: list[str]) -> dict[str, dict[str, tuple]]:
    """record id -> {version hash: (state, register id)}."""
    rv = s.record_versions
    out: dict[str, dict[str, tuple]] = {}
    with ledger.connect() as conn:
        for start in range(0, len(record_ids), 500):
            chunk = record_ids[start : start + 500]
            rows = conn.execute(
                sa.select(rv.c.source_record_id, rv.c.version_hash, rv.c.state, rv.c.register_id).where(
                    rv.c.source == source, rv.c.source_record_id.in_(chunk)
                )
            )
            for r in rows:
                out.setdefault(r.source_record_id, {})[r.version_hash] = (r.state, r.register_id)
    return out


def last_reported_day(ledger: sa.Engine) -> str | None:
    with ledger.connect() as conn:
        return conn.execute(sa.select(sa.func.max(s.record_versions.c.window_day))).scalar()


def store_result(ledger: sa.Engine, result: Reconciliation) -> None:
    """Keep the month's class counts (replacing an earlier reconciliation of it) for the trend."""
    month = result.month.isoformat()[:7]
    rc = s.reconciliations
    counts = Counter((r.source, r.caregiver_hsa_id, r.care_unit_hsa_id, r.vaccine, r.klass) for r in result.records)
    with ledger.begin() as conn:
        conn.execute(sa.delete(rc).where(rc.c.month == month))
        if counts:
            conn.execute(
                sa.insert(rc),
                [
                    {
                        "month": month,
                        "source": k[0],
                        "caregiver_hsa_id": k[1],
                        "care_unit_hsa_id": k[2],
                        "vaccine": k[3],
                        "klass": k[4],
                        "records": n,
                        "reconciled_at": now_text(),
                    }
                    for k, n in counts.items()
                ],
            )


def trend(ledger: sa.Engine, month: date, months: int = 12) -> list[dict]:
    """Reject and missing rates of the last `months` reconciled months up to `month`."""
    rc = s.reconciliations
    last = month.isoformat()[:7]
    with ledger.connect() as conn:
        rows = conn.execute(
            sa.select(rc.c.month, rc.c.klass, sa.func.sum(rc.c.records))
            .where(rc.c.month <= last)
            .group_by(rc.c.month, rc.c.klass)
        ).all()
    per: dict[str, Counter] = {}
    for m, klass, n in rows:
        per.setdefault(m, Counter())[klass] += int(n)
    out = []
    for m in sorted(per)[-months:]:
        total = sum(per[m].values()) or 1
        out.append(
            {
                "month": m,
                "records": sum(per[m].values()),
                "reject_rate": (per[m]["rejected_local"] + per[m]["rejected_register"]) / total,
                "missing_rate": per[m]["missing"] / total,
            }
        )
    return out
