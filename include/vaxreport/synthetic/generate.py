"""Generate a realistic day of vaccinations, with the defects the register sees, and their truth.

Every generated record also gets a ground-truth row saying which state it must end in, so tests
can assert exact results instead of plausible ones. That only works if records of different days
never interact by accident, so persons are partitioned by day: a person can only be registered on
days in their own residue class (15 days for children, 40 for adults). Two records of one person
and product on one date, or two COVID-19 doses closer than the register's interval, then only
happen where a defect puts them on purpose.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, time, timedelta
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from stdnum import luhn

if TYPE_CHECKING:
    from collections.abc import Iterator

STOCKHOLM = ZoneInfo("Europe/Stockholm")
CHILD_CYCLE_DAYS = 15
# An adult's doses of one registration day span up to 21 days (a late registration 14 days back,
# and the injected too-soon pair a week before that); 45 days between their registration days keeps
# them more than the 21-day COVID-19 interval apart from any other day's doses.
ADULT_CYCLE_DAYS = 45
LATE_DAYS_MAX = 14
CHILD_BORN_FROM = 2007  # a fixed split, so a person's cycle never changes at a new year
DEFAULT_PREFIX = "LEG"

# Defects injected on purpose, each with the state and code it must end in.
DEFECTS: dict[str, tuple[str, str | None]] = {
    "bad_check_digit": ("rejected_local", "PERSONID-FORMAT"),
    "impossible_date": ("rejected_local", "DATE-FORMAT"),
    "future_date": ("rejected_local", "DATE-IMPLAUSIBLE"),
    "misspelled_vaccine": ("rejected_local", "VACCINE-UNKNOWN"),
    "unknown_vaccine": ("rejected_local", "VACCINE-UNKNOWN"),
    "missing_batch": ("rejected_local", "BATCH-MISSING"),
    "batch_of_other_vaccine": ("rejected_local", "BATCH-MISMATCH"),
    "missing_dose_number": ("rejected_local", "DOSE-MISSING"),
    "dose_too_soon": ("rejected_local", "DOSE-INTERVAL"),
    "duplicate_registration": ("duplicate", "DUPLICATE"),
}

CAREGIVERS = [
    {
        "hsa_id": "SE2321000016-0001",
        "name": "Region Stockholm",
        "units": [
            ("SE2321000016-BVC1", "BVC Rinkeby"),
            ("SE2321000016-VC02", "Vårdcentral Tensta"),
            ("SE2321000016-SH03", "Elevhälsan Solna"),
            ("SE2321000016-VM04", "Vaccinationsmottagning Odenplan"),
        ],
    },
    {
        "hsa_id": "SE2321000024-0001",
        "name": "Region Uppsala",
        "units": [("SE2321000024-BVC7", "BVC Gottsunda"), ("SE2321000024-VC08", "Vårdcentral Luthagen")],
    },
    {
        "hsa_id": "SE5567654321-0001",
        "name": "Vaccinationsbolaget Norden AB",
        "units": [("SE5567654321-VX11", "Vaccinationscentralen City"), ("SE5567654321-VX12", "Resevaccin Kista")],
    },
]


@dataclass
class Record:
    """One row of the journal's vaccinations table, plus its ground truth."""

    record_id: str
    patient_id: str
    vaccine_name: str
    npl_id: str | None
    batch: str | None
    dose_number: int | None
    vaccination_date: str
    caregiver_hsa_id: str
    caregiver_name: str
    care_unit_hsa_id: str
    care_unit_name: str
    registered_at: str
    updated_at: str
    status: str = "completed"
    defect: str = "none"
    expected_state: str = "accepted"
    expected_code: str | None = None
    programme: str = field(default="", repr=False)

    def source_row(self) -> dict:
        row = asdict(self)
        for key in ("defect", "expected_state", "expected_code", "programme"):
            row.pop(key)
        return row


@cache
def _persons() -> tuple[str, ...]:
    text = resources.files("vaxreport.synthetic").joinpath("testpersonnummer.txt").read_text()
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


@cache
def _products() -> dict:
    pkg = resources.files("vaxreport")
    in_scope = json.loads(pkg.joinpath("synthetic/journal_products.json").read_text())["in_scope"]
    out = json.loads(pkg.joinpath("validation/out_of_scope.json").read_text())["products"]
    return {"in_scope": in_scope, "out_of_scope": out}


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _birth_date(pnr: str) -> date:
    return date(int(pnr[:4]), int(pnr[4:6]), int(pnr[6:8]))


def samordningsnummer_for(pnr: str) -> str:
    """Coordination number of the same birth date: day + 60, check digit recomputed."""
    day = int(pnr[6:8]) + 60
    body = pnr[2:6] + f"{day:02d}" + pnr[8:11]
    return pnr[:2] + body + luhn.calc_check_digit(body)


def _with_bad_check_digit(pid: str) -> str:
    return pid[:-1] + str((int(pid[-1]) + 1) % 10)


class _PersonPool:
    """Persons eligible on one registration day, by birth year, used without replacement per key."""

    def __init__(self, day: date, partition: tuple[int, int] = (0, 1)) -> None:
        self.by_year: dict[int, list[str]] = {}
        part, parts = partition
        for pnr in _persons():
            h = _stable_int(pnr)
            born = int(pnr[:4])
            cycle = CHILD_CYCLE_DAYS if born >= CHILD_BORN_FROM else ADULT_CYCLE_DAYS
            # sources generated side by side get disjoint persons, so they never duplicate each other
            if h % cycle == day.toordinal() % cycle and _stable_int("part" + pnr) % parts == part:
                self.by_year.setdefault(born, []).append(pnr)
        self.used: set[tuple[str, str, str]] = set()
        self.covid_used: set[str] = set()

    def pick(self, rng: random.Random, product: dict, on: date) -> str | None:
        lo_year = on.year - product["max_age"]
        hi_year = on.year - product["min_age"]
        covid = product.get("programme") == "covid19"
        years = [y for y in self.by_year if lo_year <= y <= hi_year]
        if covid:  # only people on the adult cycle, whose days are far enough apart
            years = [y for y in years if y < CHILD_BORN_FROM]
        if not years:  # the test list ends before the youngest cohorts: vaccinate the youngest we have
            years = sorted(y for y in self.by_year if y < on.year)[-2:]
        for _ in range(40):
            pnr = rng.choice(self.by_year[rng.choice(years)])
            if _birth_date(pnr) + timedelta(days=42) > on:
                continue
            key = (pnr, product["npl_id"], on.isoformat())
            if key in self.used or (covid and pnr in self.covid_used):
                continue
            self.used.add(key)
            if covid:
                self.covid_used.add(pnr)
            return pnr
        return None


def _person_id(pnr: str) -> str:
    """A few adults have only a samordningsnummer in the journal (deterministic per person)."""
    if int(pnr[:4]) < 2006 and _stable_int("sam" + pnr) % 33 == 0:
        return samordningsnummer_for(pnr)
    return pnr


def _vaccination_date(rng: random.Random, day: date) -> date:
    r = rng.random()
    if r < 0.80:
        return day
    if r < 0.95:
        return day - timedelta(days=rng.randint(1, 3))
    return day - timedelta(days=rng.randint(4, LATE_DAYS_MAX))


def _registered_at(rng: random.Random, day: date) -> str:
    local = datetime.combine(day, time(7, 0), STOCKHOLM) + timedelta(seconds=rng.randint(0, 12 * 3600))
    return local.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%d %H:%M:%S")


def _misspell(rng: random.Random, name: str, known: set[str]) -> str:
    for _ in range(20):
        i = rng.randrange(len(name) - 1)
        candidate = name[:i] + name[i + 1] + name[i] + name[i + 2 :] if rng.random() < 0.5 else name[:i] + name[i + 1 :]
        if candidate.casefold() not in known:
            return candidate
    return name + "x"


def generate_day(
    day: date,
    records: int = 2000,
    seed: int = 1,
    defect_rate: float = 0.08,
    out_of_scope_rate: float = 0.06,
    prefix: str = DEFAULT_PREFIX,
    partition: tuple[int, int] = (0, 1),
    without_defects: tuple[str, ...] = (),
) -> list[Record]:
    """Build `records` journal rows registered on `day`, deterministic by (day, seed, prefix).

    `prefix` starts every record id (one per source); `partition` (index, count) gives sources
    generated for the same day disjoint persons; `without_defects` leaves out defects a journal
    kind cannot hold (a DATE column has no 30 February).
    """
    rng = random.Random(f"{seed}:{prefix}:{day.isoformat()}")
    products = _products()
    in_scope = products["in_scope"]
    covid = [p for p in in_scope if p["programme"] == "covid19"]
    known_names = {p["name"].casefold() for p in in_scope + products["out_of_scope"]}
    pool = _PersonPool(day, partition)
    defect_names = [d for d in DEFECTS if d not in without_defects]
    out: list[Record] = []
    serial = 0

    def new_record(product: dict, on: date, pnr: str, dose: int | None) -> Record:
        nonlocal serial
        serial += 1
        caregiver = rng.choice(CAREGIVERS)
        unit_id, unit_name = rng.choice(caregiver["units"])
        registered = _registered_at(rng, day)
        return Record(
            record_id=f"{prefix}-{day:%Y%m%d}-{serial:06d}",
            patient_id=_person_id(pnr),
            vaccine_name=product["name"],
            npl_id=product["npl_id"],
            batch=rng.choice(product["batches"]),
            dose_number=dose,
            vaccination_date=on.isoformat(),
            caregiver_hsa_id=caregiver["hsa_id"],
            caregiver_name=caregiver["name"],
            care_unit_hsa_id=unit_id,
            care_unit_name=unit_name,
            registered_at=registered,
            updated_at=registered,
            programme=product.get("programme", "out_of_scope"),
        )

    def fresh(product: dict) -> Record | None:
        on = _vaccination_date(rng, day)
        pnr = pool.pick(rng, product, on)
        if pnr is None:
            return None
        dose = rng.randint(1, 6) if product.get("programme") == "covid19" else None
        return new_record(product, on, pnr, dose)

    attempts = 0
    while len(out) < records and attempts < records * 20:
        attempts += 1
        r = rng.random()
        if r < out_of_scope_rate:
            rec = fresh(rng.choice(products["out_of_scope"]))
            if rec:
                rec.defect, rec.expected_state, rec.expected_code = "out_of_scope", "excluded", "OUT-OF-SCOPE"
                out.append(rec)
            continue
        defect = rng.choice(defect_names) if r < out_of_scope_rate + defect_rate else "none"
        product = rng.choice(covid if defect in {"missing_dose_number", "dose_too_soon"} else in_scope)
        rec = fresh(product)
        if rec is None:
            continue
        if defect == "dose_too_soon":
            if len(out) + 2 > records:
                continue
            # the earlier dose a week before: both valid alone, the later one too soon
            first_date = date.fromisoformat(rec.vaccination_date) - timedelta(days=7)
            first = replace(rec, vaccination_date=first_date.isoformat(), dose_number=1)
            rec.dose_number = 2
            rec.record_id = f"{prefix}-{day:%Y%m%d}-{serial + 1:06d}"
            serial += 1
            out.append(first)
        elif defect == "duplicate_registration":
            if len(out) + 2 > records:
                continue
            out.append(rec)
            serial += 1
            rec = replace(rec, record_id=f"{prefix}-{day:%Y%m%d}-{serial:06d}", registered_at=_registered_at(rng, day))
            rec.updated_at = rec.registered_at
        else:
            _inject(rng, rec, defect, in_scope, known_names)
        if defect != "none":
            rec.defect = defect
            rec.expected_state, rec.expected_code = DEFECTS[defect]
        out.append(rec)
    return out


def _inject(rng: random.Random, rec: Record, defect: str, in_scope: list[dict], known: set[str]) -> None:
    """Spoil one field of `rec` the way journals spoil it in practice."""
    if defect == "bad_check_digit":
        rec.patient_id = _with_bad_check_digit(rec.patient_id)
    elif defect == "impossible_date":
        year = rec.vaccination_date[:4]
        rec.vaccination_date = rng.choice([f"{year}-02-30", f"{year}-13-05", f"{year}-04-31"])
    elif defect == "future_date":
        # the year typed wrong: always in the future, whenever the pipeline runs
        rec.vaccination_date = str(int(rec.vaccination_date[:4]) + 40) + rec.vaccination_date[4:]
    elif defect == "misspelled_vaccine":
        rec.npl_id = None
        rec.vaccine_name = _misspell(rng, rec.vaccine_name, known)
    elif defect == "unknown_vaccine":
        rec.npl_id = rec.npl_id[:-4] + "9999"
    elif defect == "missing_batch":
        rec.batch = rng.choice([None, "", "  "])
    elif defect == "batch_of_other_vaccine":
        other = rng.choice([p for p in in_scope if p["npl_id"] != rec.npl_id])
        rec.batch = rng.choice(other["batches"])
    elif defect == "missing_dose_number":
        rec.dose_number = None


def iter_source_rows(records: list[Record]) -> Iterator[dict]:
    for rec in records:
        yield rec.source_row()


def ground_truth_rows(records: list[Record], day: date) -> list[dict]:
    return [
        {
            "record_id": r.record_id,
            "registered_day": day.isoformat(),
            "defect": r.defect,
            "expected_state": r.expected_state,
            "expected_code": r.expected_code,
        }
        for r in records
    ]
