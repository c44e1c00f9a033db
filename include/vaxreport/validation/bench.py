"""Validation throughput on synthetic records, for the project's benchmark to call.

A function that returns numbers, not a timed test: the numbers belong to the machine they were
taken on. Records come from the synthetic generator (its defects included), through the canonical
mapping the pipeline uses, replicated with fresh ids to the size asked for: the generator itself
is far slower than validation, and real days repeat persons, units, dates and batches just as much.
"""

from __future__ import annotations

import gc
import json
import resource
import time
from collections.abc import Callable
from datetime import date, timedelta
from functools import cache
from importlib import resources

import numpy as np
import pandas as pd

from vaxreport.privacy import person_key
from vaxreport.registry.catalog import Catalog, Product

BENCH_DAY = date(2026, 11, 20)
SOURCE = "urn:vaxreport:source:bench"
# The generator draws persons without replacement from those due on its day; past ~2000 records
# its pool runs dry and it slows down sharply, so the base sample is several days of 2000 (the
# pipeline validates every window up to its day, so one frame holding several days is ordinary).
BASE_DAYS = 8
BASE_RECORDS = 2000

Validate = Callable[[pd.DataFrame, Catalog, date, list[dict], int], tuple[dict[int, str], dict]]


def synthetic_catalog() -> Catalog:
    """The register's catalog as the emulator serves it: the journals' in-scope products."""
    text = resources.files("vaxreport").joinpath("synthetic/journal_products.json").read_text()
    products = json.loads(text)["in_scope"]
    return Catalog(
        {p["npl_id"]: Product(p["npl_id"], p["name"], p["programme"], frozenset(p["batches"])) for p in products}
    )


def canonical_rows(records: list, source: str = SOURCE, first_id: int = 1) -> list[dict]:
    """Generated records as the ledger hands them to validation (ids are the ledger's row ids)."""
    keys: dict[str, str] = {}
    rows = []
    for i, r in enumerate(records, start=first_id):
        if r.patient_id not in keys:
            keys[r.patient_id] = person_key(r.patient_id)
        rows.append(
            {
                "id": i,
                "source": source,
                "source_record_id": r.record_id,
                "person_id": r.patient_id,
                "person_key": keys[r.patient_id],
                "vaccine_name": r.vaccine_name,
                "npl_id": r.npl_id,
                "batch": r.batch,
                "dose_number": r.dose_number,
                "vaccination_date": r.vaccination_date,
                "caregiver_hsa_id": r.caregiver_hsa_id,
                "care_unit_hsa_id": r.care_unit_hsa_id,
                "record_status": r.status,
                "source_problem": None,
            }
        )
    return rows


@cache
def _base_sample(day: date = BENCH_DAY) -> tuple[pd.DataFrame, tuple[dict, ...]]:
    """Several days' in-scope records (defects included), and the COVID-19 doses the same persons
    had on their previous registration day, as `person_history` would return them."""
    from vaxreport.synthetic.generate import ADULT_CYCLE_DAYS, generate_day

    records, earlier = [], []
    for back in range(BASE_DAYS):
        on = day - timedelta(days=back)
        kw = {"records": BASE_RECORDS, "seed": back, "out_of_scope_rate": 0.0}
        records += generate_day(on, **kw)
        earlier += generate_day(on - timedelta(days=ADULT_CYCLE_DAYS), defect_rate=0.0, **kw)
    covid = {npl for npl, p in synthetic_catalog().products.items() if p.programme == "covid19"}
    history = tuple(
        {"person_key": row["person_key"], "vaccination_date": row["vaccination_date"], "source": SOURCE}
        | {"source_record_id": row["source_record_id"]}
        for row in canonical_rows(earlier)
        if row["npl_id"] in covid
    )
    return pd.DataFrame(canonical_rows(records)), history


def _fresh(value):
    """An equal string that is a new object, as a database driver hands out for every row: a
    repeated object would let hashing skip work it does for real rows."""
    return value.encode().decode() if isinstance(value, str) else value


def synthetic_chunk(start: int, n_rows: int, day: date = BENCH_DAY) -> tuple[pd.DataFrame, list[dict]]:
    """Rows `start` .. `start + n_rows` of an endless synthetic day: the base sample repeated, each
    copy with its own row and record ids (same persons and dates, so no new interval faults)."""
    base, history = _base_sample(day)
    frame = base.iloc[np.arange(start, start + n_rows) % len(base)].reset_index(drop=True)
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.StringDtype):
            frame[column] = frame[column].map(_fresh)
    ids = pd.RangeIndex(start + 1, start + n_rows + 1)
    copy = (ids - 1) // len(base)
    frame["id"] = ids
    frame["source_record_id"] = frame["source_record_id"] + pd.Series(copy, dtype="str").radd("/")
    return frame, list(history)


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _reset_peak_rss() -> bool:
    """Start the kernel's high-water mark afresh (Linux), so a peak is the validation's own."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_validation(n_rows: int = 1_000_000, chunk_rows: int = 200_000, validate: Validate | None = None) -> dict:
    """Validate `n_rows` synthetic rows in chunks of `chunk_rows`; return rows/s and memory.

    One small chunk goes first, untimed, to pay what a process pays once (importing GX takes
    seconds; then its context and suite are built): `setup_seconds` says how long that took.
    Then only validation is timed, not building the chunks. `rss_after_chunk_mb` is the resident
    set after each chunk, to show that it stays flat; `peak_rss_mb` is the highest resident set
    while a chunk was being validated, the chunk itself included (where the kernel cannot reset
    its high-water mark, `peak_is_own` is false and the peak is the whole process's).
    """
    from vaxreport.validation import suite

    validate = validate or suite.validate_frame
    catalog = synthetic_catalog()
    interval = suite.DEFAULT_DOSE_INTERVAL_DAYS
    warm, history = synthetic_chunk(0, 1000)
    t0 = time.perf_counter()
    validate(warm, catalog, BENCH_DAY, history, interval)
    setup = time.perf_counter() - t0
    del warm
    gc.collect()
    rss_before = _rss_mb()
    elapsed, rejected, peak, own_peak = 0.0, 0, 0.0, True
    chunk_rss, chunk_seconds = [], []
    for start in range(0, n_rows, chunk_rows):
        frame, history = synthetic_chunk(start, min(chunk_rows, n_rows - start))
        gc.collect()
        own_peak = _reset_peak_rss() and own_peak
        t0 = time.perf_counter()
        failures, _ = validate(frame, catalog, BENCH_DAY, history, interval)
        seconds = time.perf_counter() - t0
        peak = max(peak, _peak_rss_mb())
        elapsed += seconds
        chunk_seconds.append(round(seconds, 3))
        rejected += len(failures)
        del frame, failures
        gc.collect()
        chunk_rss.append(round(_rss_mb(), 1))
    return {
        "rows": n_rows,
        "chunk_rows": chunk_rows,
        "seconds": round(elapsed, 3),
        "rows_per_second": round(n_rows / elapsed) if elapsed else None,
        "setup_seconds": round(setup, 3),
        "rows_per_second_with_setup": round(n_rows / (elapsed + setup)) if elapsed else None,
        "rejected": rejected,
        "chunk_seconds": chunk_seconds,
        "rss_before_mb": round(rss_before, 1),
        "rss_after_chunk_mb": chunk_rss,
        "peak_rss_mb": round(peak, 1),
        "peak_is_own": own_peak,
    }
