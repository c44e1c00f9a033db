"""A day of up to a few million vaccinations for the benchmark, COPYed into a vaccination-journal source.

`generate.generate_day` builds a small realistic day record by record: persons are partitioned by
day, so that days never meet, and picked by trial, which leaves too few persons and too many
misses for a day much above 2,000 records. This module serves the benchmark instead: one day of N
records on PostgreSQL, tens of thousands of rows a second, memory flat in N.

Every record takes a slot of its own, a (person, product, vaccination date) of a fixed slot space
over the test persons, the in-scope products and the 15 dates a registration on the day may carry
(the day and 14 days before it). The slots are drawn through a keyed permutation of their numbers,
so no two records share one and nothing has to remember which were taken. Each adult has exactly
one COVID-19 slot, so nobody gets two COVID-19 doses and the register's 21-day interval can only
trip where a test puts it on purpose. Products that suit the person's age are taken first and
vaccination dates follow `generate.py`'s late-registration mix while slots allow; at a million
records (some 25 a person) the day itself fills up and the rest spill to the days before, and
products no longer suit every age (no rule checks the age, only that the date is not before birth).

Persons are Skatteverket's test personnummer only, as they stand (no samordningsnummer: the
register's population has none of them). Each record has one intended outcome, counted in the
result and written to `vaxreport_ground_truth` like `writers.write_day` does:

- `none`: a valid new record: `ready` after validation, `accepted` at the register;
- `correction`: changed later the same day (`updated_at` after `registered_at`). The journal keeps
  one row a record, so the day's extract sees only the corrected version: `ready`, then `accepted`;
- `void`: marked entered-in-error later the same day: `ready` (a void is not validated), then
  `excluded` (VOIDED) when bundling finds the register never had it;
- a defect of `generate.DEFECTS` that the validator rejects on the row alone (not the paired
  `dose_too_soon` and `duplicate_registration`, nor what the kind cannot hold): `rejected_local`.

Consecutive days generated into one source share persons, so a COVID-19 dose of one day may come
too soon after another day's; the benchmark generates a single day.
"""

from __future__ import annotations

import io
import random
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import sqlalchemy as sa

from vaxreport.registry.catalog import PROGRAMME_START
from vaxreport.sources import writers
from vaxreport.sources.mapping import load_kind
from vaxreport.synthetic.generate import (
    CAREGIVERS,
    DEFECTS,
    LATE_DAYS_MAX,
    STOCKHOLM,
    Record,
    _inject,
    _persons,
    _products,
)

KIND = "vaccination_journal"
DEFAULT_PREFIX = "BULK"
CHUNK_ROWS = 25_000
TABLE = "vaccinations"
COLUMNS = (
    "id",
    "patient_ssn",
    "npl_id",
    "vaccine_name",
    "lot_number",
    "dose_number",
    "administered_on",
    "care_provider_hsa_id",
    "care_provider_name",
    "care_unit_hsa_id",
    "care_unit_name",
    "voided",
    "registered_at",
    "updated_at",
)
TRUTH_COLUMNS = ("record_id", "registered_day", "defect", "expected_state", "expected_code")
# The share of vaccination dates on the day, 1-3 days and 4-14 days before it: generate.py's mix.
DATE_GROUPS = ((range(0, 1), 0.80), (range(1, 4), 0.15), (range(4, LATE_DAYS_MAX + 1), 0.05))
PAIRED_DEFECTS = ("dose_too_soon", "duplicate_registration")  # need a second record; not for bulk days
MIN_AGE_DAYS = 42  # nobody is vaccinated in their first six weeks (generate.py's rule too)
COVID_ADULT_YEARS = 18


@dataclass(frozen=True)
class Mix:
    """Shares of the intended outcomes; the rest are valid new records."""

    corrections: float = 0.02
    voids: float = 0.01
    defects: float = 0.01
    covid: float = 0.10  # of all records, at most one a person


@dataclass
class BulkDay:
    """What was written: rows, and how many of them were meant for each outcome."""

    day: date
    prefix: str
    rows: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)  # none, correction, void, or a defect name

    def expected_after_validation(self) -> dict[str, int]:
        """Ledger states after `validate_day`: voids are `ready` until bundling excludes them."""
        rejected = sum(n for label, n in self.outcomes.items() if label in DEFECTS)
        return {"ready": self.rows - rejected, "rejected_local": rejected}

    def expected_codes(self) -> dict[str, int]:
        """The rejection codes validation must give, and how often."""
        codes: Counter[str] = Counter()
        for label, n in self.outcomes.items():
            if label in DEFECTS:
                codes[DEFECTS[label][1]] += n
        return dict(codes)


def _outcome_truth(label: str) -> tuple[str, str | None]:
    if label in DEFECTS:
        return DEFECTS[label]
    if label == "void":
        return "excluded", "VOIDED"
    return "accepted", None


# -- the slot space ----------------------------------------------------------------------------

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)


class _Permutation:
    """A keyed permutation of range(size): a four-round Feistel network over the smallest even
    number of bits that holds `size`, cycle-walked back into range (a value past the end goes
    through again until it lands inside, which keeps it a permutation of range(size))."""

    def __init__(self, size: int, key: list[int]) -> None:
        bits = max(2, (size - 1).bit_length())
        self.size = size
        self.half = np.uint64((bits + 1) // 2)
        self.mask = np.uint64((1 << int(self.half)) - 1)
        self.keys = np.random.SeedSequence(key).generate_state(4, dtype=np.uint64)

    def _once(self, x: np.ndarray) -> np.ndarray:
        left, right = x >> self.half, x & self.mask
        for k in self.keys:
            f = right * _M1 + k
            f ^= f >> np.uint64(31)
            f *= _M2
            f ^= f >> np.uint64(29)
            left, right = right, left ^ (f & self.mask)
        return (left << self.half) | right

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        x = self._once(positions.astype(np.uint64))
        outside = x >= self.size
        while outside.any():
            x[outside] = self._once(x[outside])
            outside = x >= self.size
        return x.astype(np.int64)


@dataclass
class _Tier:
    """Slots of one kind: for person p, `counts[p]` of them, numbered from `starts[p]`."""

    name: str
    counts: np.ndarray
    # (persons, slot numbers within each person's own) -> (products, date offsets)
    decode: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
    starts: np.ndarray = field(init=False)
    size: int = field(init=False)

    def __post_init__(self) -> None:
        ends = np.cumsum(self.counts, dtype=np.int64)
        self.starts = ends - self.counts
        self.size = int(ends[-1]) if len(ends) else 0

    def slots(self, numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        person = np.searchsorted(self.starts + self.counts, numbers, side="right")
        product, offset = self.decode(person, numbers - self.starts[person])
        return person, product, offset


class _Plan:
    """The day's persons, products and slot tiers, and how many records each tier gives."""

    def __init__(self, day: date, records: int, seed: int, mix: Mix) -> None:
        earliest = day - timedelta(days=LATE_DAYS_MAX)
        products = [
            p
            for p in _products()["in_scope"]
            if date.fromisoformat(PROGRAMME_START.get(p["programme"], "1900-01-01")) <= earliest
        ]
        everyone = np.asarray(_persons())
        digits = everyone.astype("S12").view(np.uint8).reshape(-1, 12).astype(np.int64) - ord("0")
        year, month, mday = (digits[:, a:b] @ 10 ** np.arange(b - a - 1, -1, -1) for a, b in ((0, 4), (4, 6), (6, 8)))
        born = (year - 1970).astype("datetime64[Y]") + (month - 1).astype("timedelta64[M]")
        born = born.astype("datetime64[D]") + (mday - 1).astype("timedelta64[D]")
        keep = born + MIN_AGE_DAYS <= np.datetime64(earliest)
        self.persons = everyone[keep]
        had_birthday = month[keep] * 100 + mday[keep] <= day.month * 100 + day.day
        age = day.year - year[keep] - (~had_birthday).astype(np.int64)

        self.products = products
        self.npl = np.asarray([p["npl_id"] for p in products], dtype=object)
        self.name = np.asarray([p["name"] for p in products], dtype=object)
        self.is_covid = np.asarray([p["programme"] == "covid19" for p in products], dtype=bool)
        width = max(len(p["batches"]) for p in products)
        self.lots = np.asarray([p["batches"] + [None] * (width - len(p["batches"])) for p in products], dtype=object)
        self.n_lots = np.asarray([len(p["batches"]) for p in products], dtype=np.int64)
        rng = np.random.default_rng([seed, day.toordinal(), 0])

        # COVID-19: one slot an adult, its product, date and dose number fixed per person
        covid = np.flatnonzero(self.is_covid)
        adult = age >= COVID_ADULT_YEARS if len(covid) else np.zeros(len(self.persons), dtype=bool)
        covid_product = covid[rng.integers(0, max(1, len(covid)), len(self.persons))] if len(covid) else None
        weights = np.concatenate([np.full(len(offsets), share / len(offsets)) for offsets, share in DATE_GROUPS])
        covid_offset = rng.choice(LATE_DAYS_MAX + 1, size=len(self.persons), p=weights / weights.sum())
        self.covid_dose = rng.integers(1, 7, len(self.persons))

        # other products: those that suit the person's age first, then the rest, per date group
        others = np.flatnonzero(~self.is_covid)
        lo = np.asarray([products[i]["min_age"] for i in others])
        hi = np.asarray([products[i]["max_age"] for i in others])
        fits = (age[:, None] >= lo[None, :]) & (age[:, None] <= hi[None, :])
        order = others[np.argsort(~fits, axis=1, kind="stable")]  # per person: fitting products first
        n_fit = fits.sum(axis=1)
        n_rest = len(others) - n_fit

        def decoder(base: np.ndarray | None, offsets: range):
            def decode(person: np.ndarray, local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                step = len(offsets)
                column = local // step + (0 if base is None else base[person])
                return order[person, column], local % step + offsets.start

            return decode

        def covid_decode(person: np.ndarray, local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return covid_product[person], covid_offset[person]

        covid_tier = _Tier("covid19", adult.astype(np.int64), covid_decode)
        n_covid = min(round(records * mix.covid), covid_tier.size)
        self.quota: list[tuple[_Tier, int]] = [(covid_tier, n_covid)]
        rest = records - n_covid
        targets = [round(rest * share) for _, share in DATE_GROUPS[:-1]]
        targets.append(rest - sum(targets))
        carry = 0  # what a date group could not hold goes to the next, earlier dates
        for (offsets, _), target in zip(DATE_GROUPS, targets, strict=True):
            wanted = target + carry
            for name, counts, base in (("fit", n_fit, None), ("other", n_rest, n_fit)):
                tier = _Tier(f"{name}-{offsets.start}", counts * len(offsets), decoder(base, offsets))
                take = min(wanted, tier.size)
                self.quota.append((tier, take))
                wanted -= take
            carry = wanted
        if carry:
            raise ValueError(f"{records:,} records do not fit in the slot space of {day} ({carry:,} too many)")
        self.permutations = [
            _Permutation(tier.size, [seed, day.toordinal(), i + 1]) if n else None
            for i, (tier, n) in enumerate(self.quota)
        ]

    def chunk(self, k: int, chunks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Persons, products and date offsets of chunk `k` of `chunks`: every tier's share of it."""
        parts = []
        for (tier, n), permutation in zip(self.quota, self.permutations, strict=True):
            lo, hi = n * k // chunks, n * (k + 1) // chunks
            if hi > lo:
                parts.append(tier.slots(permutation(np.arange(lo, hi, dtype=np.int64))))
        return tuple(np.concatenate([part[i] for part in parts]) for i in range(3))


# -- the rows ----------------------------------------------------------------------------------

_UNITS = [(cg["hsa_id"], cg["name"], uid, uname) for cg in CAREGIVERS for uid, uname in cg["units"]]
# a caregiver at random, then one of its units (as generate.py chooses them)
_UNIT_WEIGHTS = np.asarray([1 / len(CAREGIVERS) / len(cg["units"]) for cg in CAREGIVERS for _ in cg["units"]])
_UNIT_COLUMNS = [np.asarray(column, dtype=object) for column in zip(*_UNITS, strict=True)]
WORKDAY_SECONDS = 12 * 3600  # registered 07:00-19:00 Stockholm time, in time order like a journal
CHANGED_WITHIN_SECONDS = 4 * 3600  # corrected or voided up to four hours later, still on the day
NULL = "\\N"
# journal column -> generate.Record field, as `writers.write_day` maps them for this kind
_RECORD_FIELDS = {
    "id": "record_id",
    "patient_ssn": "patient_id",
    "npl_id": "npl_id",
    "vaccine_name": "vaccine_name",
    "lot_number": "batch",
    "dose_number": "dose_number",
    "administered_on": "vaccination_date",
    "care_provider_hsa_id": "caregiver_hsa_id",
    "care_provider_name": "caregiver_name",
    "care_unit_hsa_id": "care_unit_hsa_id",
    "care_unit_name": "care_unit_name",
    "registered_at": "registered_at",
    "updated_at": "updated_at",
}
_COPY_SPECIAL = ("\\", "\t", "\n", "\r")


@dataclass
class _Writer:
    """Builds the day a chunk at a time, as COPY text.

    Every value comes from fixed tables (persons, products, caregivers, dates) that `_check_plain`
    finds free of COPY's special characters, and the defects only drop, swap or replace such
    values; so the rows are joined as they are, without escaping each value.
    """

    plan: _Plan
    day: date
    seed: int
    mix: Mix
    prefix: str
    defects: list[str]
    known_names: set[str]
    serial: int = 0
    stamps: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.stamps = _stamp_texts(self.day)

    def chunk(self, k: int, chunks: int) -> tuple[str, str, list[str]]:
        """Journal rows and ground-truth rows of chunk `k` as COPY text, and their intended outcomes."""
        plan = self.plan
        person, product, offset = plan.chunk(k, chunks)
        n = len(person)
        rng = np.random.default_rng([self.seed, self.day.toordinal(), k, 1 << 20])
        order = rng.permutation(n)  # the tiers' records mixed, as a journal would hold them
        person, product, offset = person[order], product[order], offset[order]
        draw = rng.random(n)
        cut_correction = self.mix.corrections
        cut_void = cut_correction + self.mix.voids
        cut_defect = cut_void + self.mix.defects
        labels = np.where(
            draw < cut_correction,
            "correction",
            np.where(draw < cut_void, "void", np.where(draw < cut_defect, "defect", "none")),
        ).astype(object)
        lot = plan.lots[product, rng.integers(0, plan.n_lots[product])]
        unit = rng.choice(len(_UNITS), size=n, p=_UNIT_WEIGHTS)
        # chunk k holds the k-th part of the working day, so the table fills in registration order
        registered = np.sort(rng.integers(k * WORKDAY_SECONDS // chunks, (k + 1) * WORKDAY_SECONDS // chunks + 1, n))
        changed = (labels == "correction") | (labels == "void")
        updated = registered + np.where(changed, rng.integers(60, CHANGED_WITHIN_SECONDS, n), 0)
        dates = np.asarray([(self.day - timedelta(days=d)).isoformat() for d in range(LATE_DAYS_MAX + 1)], dtype=object)
        dose = np.where(plan.is_covid[product], plan.covid_dose[person], 0).tolist()
        head = f"{self.prefix}-{self.day:%Y%m%d}-"
        row = dict.fromkeys(COLUMNS)
        row.update(
            id=[f"{head}{serial:07d}" for serial in range(self.serial + 1, self.serial + n + 1)],
            patient_ssn=plan.persons[person].tolist(),
            npl_id=plan.npl[product].tolist(),
            vaccine_name=plan.name[product].tolist(),
            lot_number=lot.tolist(),
            dose_number=[str(d) if d else None for d in dose],
            administered_on=dates[offset].tolist(),
            voided=np.where(labels == "void", "t", "f").tolist(),
            registered_at=self.stamps[registered].tolist(),
            updated_at=self.stamps[updated].tolist(),
        )
        for name, column in zip(
            ("care_provider_hsa_id", "care_provider_name", "care_unit_hsa_id", "care_unit_name"),
            _UNIT_COLUMNS,
            strict=True,
        ):
            row[name] = column[unit].tolist()
        self.serial += n
        outcomes = labels.tolist()
        spoil = random.Random(f"{self.seed}:{self.day.isoformat()}:{k}")
        for i in np.flatnonzero(labels == "defect").tolist():
            outcomes[i] = self._spoil(spoil, row, i)
        truth = {
            label: "\t".join([self.day.isoformat(), label, *(v or NULL for v in _outcome_truth(label))])
            for label in set(outcomes)
        }
        journal = "\n".join(
            "\t".join(values)
            for values in zip(*([NULL if v is None else v for v in row[c]] for c in COLUMNS), strict=True)
        )
        truth_text = "\n".join(f"{rid}\t{truth[label]}" for rid, label in zip(row["id"], outcomes, strict=True))
        return journal + "\n", truth_text + "\n", outcomes

    def _spoil(self, rng: random.Random, row: dict[str, list], i: int) -> str:
        """Put one of the defects into row `i` with generate.py's own injector; returns its name."""
        covid = row["dose_number"][i] is not None
        defect = rng.choice([d for d in self.defects if covid or d != "missing_dose_number"])
        rec = Record(**{name: row[column][i] for column, name in _RECORD_FIELDS.items()})
        _inject(rng, rec, defect, self.plan.products, self.known_names)
        for column, name in _RECORD_FIELDS.items():
            row[column][i] = getattr(rec, name)
        return defect


def _stamp_texts(day: date) -> np.ndarray:
    """Every second from 07:00 Stockholm time to the last change (23:00) as UTC text with its zone,
    so the session's time zone cannot shift it; a row's time is then one look-up."""
    start = datetime.combine(day, time(7), STOCKHOLM).astimezone(UTC)
    ymd = f"{start:%Y-%m-%d}"  # 07:00-23:00 Stockholm time is one UTC date, summer or winter
    seconds = range(start.hour * 3600, start.hour * 3600 + WORKDAY_SECONDS + CHANGED_WITHIN_SECONDS + 1)
    return np.asarray([f"{ymd} {t // 3600:02d}:{t // 60 % 60:02d}:{t % 60:02d}+00" for t in seconds], dtype=object)


def _check_plain(texts: list[str | None]) -> None:
    for text in texts:
        if text is not None and any(c in text for c in _COPY_SPECIAL):
            raise ValueError("a fixed value holds a tab, newline or backslash; bulk rows are not escaped")


def _copy(conn: sa.Connection, table: str, columns: tuple[str, ...], text: str) -> None:
    """COPY (text format) of rows already joined and free of special characters."""
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", io.StringIO(text), size=1 << 18)
    finally:
        cursor.close()


def iter_chunks(
    day: date,
    records: int,
    seed: int = 1,
    mix: Mix | None = None,
    prefix: str = DEFAULT_PREFIX,
    chunk_rows: int = CHUNK_ROWS,
) -> Iterator[tuple[str, str, list[str]]]:
    """The day's rows a chunk at a time: the journal rows and their ground truth as COPY text (the
    columns of `COLUMNS` and `TRUTH_COLUMNS`), and each row's intended outcome.

    Deterministic by (day, records, seed, mix, prefix, chunk_rows).
    """
    if records <= 0:
        return
    mix = mix or Mix()
    kind = load_kind(KIND)
    products = _products()
    defects = [
        d
        for d, (state, _) in DEFECTS.items()
        if state == "rejected_local" and d not in PAIRED_DEFECTS and d not in kind.unsupported_defects
    ]
    if "record_status" not in kind.fields:  # a journal without a void flag cannot void
        mix = Mix(mix.corrections, 0.0, mix.defects, mix.covid)
    plan = _Plan(day, records, seed, mix)
    _check_plain(
        [v for p in plan.products for v in (p["name"], p["npl_id"], *p["batches"])]
        + [v for unit in _UNITS for v in unit]
        + [prefix]
    )
    writer = _Writer(
        plan=plan,
        day=day,
        seed=seed,
        mix=mix,
        prefix=prefix,
        defects=defects,
        known_names={p["name"].casefold() for p in products["in_scope"] + products["out_of_scope"]},
    )
    chunks = max(1, -(-records // chunk_rows))
    for k in range(chunks):
        yield writer.chunk(k, chunks)


def write_bulk_day(
    engine: sa.Engine,
    day: date,
    records: int,
    seed: int = 1,
    mix: Mix | None = None,
    prefix: str = DEFAULT_PREFIX,
    chunk_rows: int = CHUNK_ROWS,
) -> BulkDay:
    """Write `records` vaccination-journal rows registered on `day` into a PostgreSQL source.

    Replaces the rows (and ground truth) an earlier call wrote for the same day and prefix, in one
    transaction. A chunk is COPYed by a second thread while the next one is built, so at most two
    chunks are held: memory stays flat in `records`. Returns how many rows were written for each
    intended outcome.
    """
    if engine.dialect.name != "postgresql":
        raise ValueError(f"bulk days are written by PostgreSQL COPY; {engine.dialect.name} is not supported")
    result = BulkDay(day, prefix)
    writers.create_schema(engine, load_kind(KIND))
    like = f"{prefix}-{day:%Y%m%d}-%"

    def copy(conn: sa.Connection, journal: str, truth: str) -> None:
        _copy(conn, TABLE, COLUMNS, journal)
        _copy(conn, "vaxreport_ground_truth", TRUTH_COLUMNS, truth)

    with engine.begin() as conn, ThreadPoolExecutor(max_workers=1) as copier:
        conn.execute(sa.text(f"DELETE FROM {TABLE} WHERE id LIKE :p"), {"p": like})
        conn.execute(sa.text("DELETE FROM vaxreport_ground_truth WHERE record_id LIKE :p"), {"p": like})
        pending = None
        for journal, truth, outcomes in iter_chunks(day, records, seed, mix, prefix, chunk_rows):
            if pending is not None:
                pending.result()
            pending = copier.submit(copy, conn, journal, truth)
            result.rows += len(outcomes)
            result.outcomes.update(outcomes)
        if pending is not None:
            pending.result()
        conn.exec_driver_sql(f"ANALYZE {TABLE}")  # the extract's plan should see a million rows, not none
    return result
