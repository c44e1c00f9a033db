"""The register's rules as a Great Expectations suite, run on one window's records.

GX checks columns; some rules need more than a column (a Luhn digit, a birth date, a batch that
must belong to *this* vaccine, the interval to a person's previous dose). Those are computed first
as derived boolean columns, then GX checks every rule the same way, and each failing expectation
carries the register's error code in its `meta`. A row failing several rules gets the first one in
the register's own order, so local and register rejections of one fault carry one code.

A day can hold a million records, validated in chunks, so both halves are built for that. The
derived columns are computed once per distinct value (persons, units, dates, vaccines and batches
repeat heavily) and spread over the rows with numpy; the checks by pattern and length become
boolean columns too, holding the verdict GX's own pandas metric gives, so GX checks only booleans
and a few categoricals and runs no Python per row. The GX context, data source, batch definition
and suite are built once per process (a suite per catalog) and serve every chunk.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from stdnum import luhn
from stdnum.se import personnummer

from vaxreport.registry.catalog import PROGRAMME_START, Catalog
from vaxreport.validation.reasons import RULE_ORDER

HSA_ID = r"^SE\d{10}-[A-Za-z0-9]+$"
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DEFAULT_DOSE_INTERVAL_DAYS = 21
UNRESOLVED = "(unresolved)"


def person_birth_date(value: str | None) -> date | None:
    """Birth date of a valid 12-digit personnummer or samordningsnummer, else None.

    python-stdnum checks personnummer; samordningsnummer (day + 60) it does not know, so those are
    checked here the same way: a real calendar date and the Luhn digit over the last ten digits.
    """
    if not value or not re.fullmatch(r"\d{12}", value) or value[8:11] == "000":
        return None  # födelsenummer 000 is never issued (python-stdnum lets it through)
    day = int(value[6:8])
    if day > 60:
        try:
            born = date(int(value[:4]), int(value[4:6]), day - 60)
        except ValueError:
            return None
        return born if luhn.is_valid(value[2:]) else None
    if not personnummer.is_valid(value):
        return None
    return date(int(value[:4]), int(value[4:6]), day)


def parse_date(value: str | None) -> date | None:
    if not value or not DATE_RE.match(value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


# The columns the suite checks by pattern or length, each as a derived boolean column holding
# the verdict GX itself gave (its own pandas string methods, see `_format_ok`), computed once per
# distinct value, so GX checks a boolean instead of running a regex over every row.
FORMAT_CHECKS = (
    ("person_id_format_ok", "person_id", "regex", r"^\d{12}$"),
    ("date_format_ok", "vaccination_date", "regex", r"^\d{4}-\d{2}-\d{2}$"),
    ("caregiver_format_ok", "caregiver_hsa_id", "regex", HSA_ID),
    ("care_unit_format_ok", "care_unit_hsa_id", "regex", HSA_ID),
    ("caregiver_length_ok", "caregiver_hsa_id", "max_length", 31),
    ("care_unit_length_ok", "care_unit_hsa_id", "max_length", 31),
)


Distinct = tuple[np.ndarray, list]  # per-row codes into a list of distinct values
# earlier doses (person_key, vaccination_date, source, source_record_id), or how to look up those
# of some persons (by key): only persons with a COVID-19 dose to compare are ever looked up
History = list[dict] | Callable[[list[Any]], list[dict]]


def _factorize(column: pd.Series) -> Distinct:
    """Per-row codes into the column's distinct values as the rules see them (None for missing).

    This is what lets every rule run once per distinct value instead of once per row. An object
    column holding anything but strings gets one code per row instead: 1, 1.0 and True hash
    alike, and must not share a verdict that they would not all get one by one.
    """
    if column.dtype == object and not _is_text(column):
        missing = column.isna().tolist()
        return np.arange(len(column)), [None if gone else v for v, gone in zip(column.tolist(), missing, strict=True)]
    # an object array hashes the same texts about twice as fast as pandas' string column does
    array = column.to_numpy(dtype=object) if isinstance(column.dtype, pd.StringDtype) else column.to_numpy()
    codes, uniques = pd.factorize(array, use_na_sentinel=True)
    return np.where(codes < 0, len(uniques), codes), [*uniques.tolist(), None]


def _indices(codes: np.ndarray) -> Distinct:
    """Codes that are already indices (into products, say), as a `Distinct` whose values are those
    indices."""
    codes = np.asarray(codes, dtype=np.int64)
    return codes, list(range(int(codes.max()) + 1 if len(codes) else 0))


def _blank(distinct: Distinct) -> Distinct:
    """The same column with missing values as "", as the checks by format see it."""
    codes, values = distinct
    return codes, ["" if v is None else v for v in values]


def _array(values: list, dtype: Any) -> np.ndarray:
    if dtype is not object:
        return np.asarray(values, dtype=dtype)
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):  # element by element: a tuple value must stay one value
        out[i] = value
    return out


def _per_value(fn: Callable[..., Any], *parts: Distinct, dtype: Any = object) -> np.ndarray:
    """`fn` of each row's values, called once per distinct combination of them."""
    key, size = parts[0][0], len(parts[0][1])
    for codes, values in parts[1:]:
        key, size = key * len(values) + codes, size * len(values)
        if size > 4 * len(key) + 1024:  # a sparse product: number the combinations that occur
            key = pd.factorize(key)[0]
            size = int(key.max()) + 1 if len(key) else 0
    used = np.zeros(size, dtype=bool)
    used[key] = True
    combos = np.flatnonzero(used)
    first = np.zeros(size, dtype=np.int64)
    first[key] = np.arange(len(key))  # any row of a combination stands for all of them
    results = [fn(*(values[codes[row]] for codes, values in parts)) for row in first[combos].tolist()]
    verdicts = np.zeros(size, dtype=dtype) if dtype is not object else np.empty(size, dtype=object)
    verdicts[combos] = _array(results, dtype)
    return verdicts[key]


def _mapped(distinct: Distinct, fn: Callable[[Any], Any]) -> tuple[pd.Series, np.ndarray]:
    """What `column.map(fn)` makes of each distinct value, and each row's index into that.

    The mapped values keep the dtype pandas gives them, which depends only on the kinds of value
    present, not on how often each occurs: so mapping the distinct values matches mapping rows.
    """
    codes, values = distinct
    used = np.zeros(len(values), dtype=bool)
    used[codes] = True
    present = np.flatnonzero(used)
    mapped = pd.Series(_array([values[i] for i in present], object), dtype=object).map(fn)
    index_of = np.zeros(len(values), dtype=np.int64)
    index_of[present] = np.arange(len(present))
    return mapped, index_of[codes]


def _categorical(labels: pd.Series | list, codes: np.ndarray) -> pd.Categorical:
    """Rows as codes into a few labels: cheap for GX to fingerprint and to check against a set."""
    label_codes, categories = pd.factorize(pd.Series(_array(list(labels), object), dtype=object))
    return pd.Categorical.from_codes(label_codes[codes], categories=categories)


def _format_ok(distinct: Distinct, check: str, arg: Any) -> np.ndarray:
    """GX's verdict on each value, computed as its pandas metric computes it (a missing value is
    skipped, so expected), once per distinct value."""
    codes, values = distinct
    text = pd.Series(_array(values, object), dtype=object)
    present = text.notna().to_numpy()
    text = text[present].astype(str)
    verdict = np.ones(len(values), dtype=bool)
    if check == "regex":
        verdict[present] = text.str.contains(arg).to_numpy(dtype=bool)
    else:
        verdict[present] = (text.str.len() <= arg).to_numpy(dtype=bool)
    return verdict[codes]


def _ordinal(day: date | None) -> int:
    return day.toordinal() if day is not None else 0


@functools.lru_cache(maxsize=1 << 16)
def _birth_ordinal_cached(value: str) -> int:
    return _ordinal(person_birth_date(value))


def _birth_ordinal(value: Any) -> int:
    """python-stdnum takes tens of microseconds a number, and chunks of one day share their
    persons, so verdicts on text ids are kept across calls (in memory only, bounded)."""
    return _birth_ordinal_cached(value) if type(value) is str else _ordinal(person_birth_date(value))


def derive_columns(
    frame: pd.DataFrame,
    catalog: Catalog,
    registered_day: date,
    history: History,
    interval_days: int = DEFAULT_DOSE_INTERVAL_DAYS,
) -> pd.DataFrame:
    """Add the derived columns the suite checks, plus `resolved_npl_id` for the bundle builder.

    Values repeat heavily (a few thousand persons, a handful of units, dates, vaccines and
    batches), so each column is factorized once and every rule runs once per distinct value (or
    combination), then is spread over the rows with numpy. Missing values are None to the rules
    (pandas 3 keeps NaN, which is truthy) and "" in the columns checked by format. The columns GX
    checks are booleans or categoricals, so GX runs no Python per row.
    """
    df = frame.copy(deep=False)
    person_id = _factorize(frame["person_id"])
    on_text = _factorize(frame["vaccination_date"])
    caregiver = _blank(_factorize(frame["caregiver_hsa_id"]))
    care_unit = _blank(_factorize(frame["care_unit_hsa_id"]))
    for column in ("caregiver_hsa_id", "care_unit_hsa_id", "vaccination_date"):
        df[column] = _blank_missing(frame[column])
    births = _per_value(_birth_ordinal, person_id, dtype=np.int64)
    dates = _per_value(lambda v: _ordinal(parse_date(v)), on_text, dtype=np.int64)

    # one product per distinct (npl_id, name); a row points at its product by index
    resolved: list = []

    def resolve(npl_id, name) -> int:
        resolved.append((catalog.resolve(npl_id, name), npl_id))
        return len(resolved) - 1

    product_of = _per_value(resolve, _factorize(frame["npl_id"]), _factorize(frame["vaccine_name"]), dtype=np.int64)
    products = [p for p, _ in resolved]
    # GX skips empty values in set checks, so an unresolvable vaccine gets a visible placeholder
    df["resolved_npl_id"] = _categorical([p.npl_id if p else (n or UNRESOLVED) for p, n in resolved], product_of)
    is_covid = np.asarray([p is not None and p.programme == "covid19" for p in products], dtype=bool)[product_of]
    start = [PROGRAMME_START.get(p.programme) if p is not None else None for p in products]
    programme_start = np.asarray([date.fromisoformat(s).toordinal() if s else 0 for s in start], dtype=np.int64)

    person_ok = births > 0
    df["person_ok"] = person_ok
    df["units_ok"] = _per_value(_units_ok, caregiver, care_unit, dtype=bool)
    df["date_ok"] = dates > 0  # strptime would take 2026-1-5; the register wants YYYY-MM-DD
    given, given_of = _mapped(_factorize(frame["batch"]), lambda b: b if b and str(b).strip() else None)
    df["batch_given"] = _categorical(given, given_of)

    # a date is plausible when it is not in the future, not before birth, not before the programme
    on_starts = programme_start[product_of]
    df["date_plausible"] = (dates == 0) | (
        (dates <= registered_day.toordinal())
        & ((births == 0) | (dates >= births))
        & ((on_starts == 0) | (dates >= on_starts))
    )
    # a batch as `Series.map` left it: among batch texts pandas 3 stores a missing one as NaN,
    # which is not None, so a missing batch fails this check too (the row is reported as
    # BATCH-MISSING, which comes first, but it is counted under BATCH-MISMATCH as well)
    lots = given.tolist()
    df["batch_matches"] = _per_value(
        lambda p, b: products[p] is None or lots[b] is None or lots[b] in products[p].lots,
        _indices(product_of),
        _indices(given_of),
        dtype=bool,
    )
    df["dose_present"] = _per_value(
        lambda covid, dose: not covid or (pd.notna(dose) and 1 <= int(dose) <= 99),
        _indices(is_covid),
        _factorize(frame["dose_number"]),
        dtype=bool,
    )
    eligible = (
        is_covid
        & (dates > 0)
        & _is_completed(frame["record_status"])
        & person_ok
        & df["units_ok"].to_numpy()
        & df["date_plausible"].to_numpy()
        & np.asarray([bool(b) for b in lots], dtype=bool)[given_of]
        & df["batch_matches"].to_numpy()
        & df["dose_present"].to_numpy()
    )
    df["dose_interval_ok"] = _dose_interval_ok(frame, eligible, dates, history, interval_days)
    checked = {"person_id": person_id, "vaccination_date": _blank(on_text)}
    checked |= {"caregiver_hsa_id": caregiver, "care_unit_hsa_id": care_unit}
    for name, column, check, arg in FORMAT_CHECKS:
        df[name] = _format_ok(checked[column], check, arg)
    return df


def _is_completed(column: pd.Series) -> np.ndarray:
    """A given dose, not a void: the register checks intervals between given doses only."""
    if isinstance(column.dtype, pd.StringDtype):  # texts (missing as NaN): numpy compares them at once
        return np.asarray(column.to_numpy(dtype=object) == "completed", dtype=bool)
    return _per_value(lambda status: status == "completed", _factorize(column), dtype=bool)


def _blank_missing(column: pd.Series) -> pd.Series:
    """Missing as "", so the format checks see a value to reject instead of skipping it."""
    if column.dtype == object:
        return column.where(column.notna(), "")
    return column.fillna("")


def _units_ok(caregiver: str, unit: str) -> bool:
    return (
        bool(re.match(HSA_ID, caregiver)) and bool(re.match(HSA_ID, unit)) and len(caregiver) <= 31 and len(unit) <= 31
    )


def _dose_interval_ok(
    frame: pd.DataFrame, eligible: np.ndarray, dates: np.ndarray, history: History, interval_days: int
) -> np.ndarray:
    """COVID-19 doses must be `interval_days` apart from the person's other doses on other dates.

    Records are taken in the order they will be sent (date, then record id); a dose is compared
    with the doses already accepted or on their way, and with the earlier ones of this window.
    Only doses that reach the register count (`eligible`: a given COVID-19 dose that passes every
    other rule).

    Two doses of one person on one date get the same verdict whichever is taken first, and a dose
    that fails is not kept; so the verdict depends only on (person, date), taken in date order per
    person (valid dates are ASCII YYYY-MM-DD, so text order is date order). Most persons have one
    such date and no earlier dose: they pass without a look, and only the others are walked.
    """
    result = np.ones(len(frame), dtype=bool)
    rows = np.flatnonzero(eligible)
    if not len(rows):
        return result
    persons, person_values = _persons(frame["person_key"].iloc[rows])
    if callable(history):  # looked up now, for the persons with a dose to compare only
        history = history([v for v in person_values if v is not None])
    kept = _history_dates(frame, history)
    ons = dates[rows]
    span = int(ons.max()) + 1
    pair_of_row, pairs = pd.factorize(persons.astype(np.int64) * span + ons)
    pair_person, pair_on = np.divmod(pairs, span)
    dates_per_person = np.bincount(pair_person, minlength=len(person_values))
    with_history = np.asarray([value in kept for value in person_values], dtype=bool)
    walk = np.flatnonzero((dates_per_person > 1) | (with_history & (dates_per_person > 0)))
    too_soon = np.zeros(len(pairs), dtype=bool)
    if len(walk):
        walked = np.flatnonzero(np.isin(pair_person, walk))
        walked = walked[np.lexsort((pair_on[walked], pair_person[walked]))]
        person, taken = -1, []
        for pair, who, on in zip(walked.tolist(), pair_person[walked].tolist(), pair_on[walked].tolist(), strict=True):
            if who != person:
                person, taken = who, list(kept.get(person_values[who], ()))
            if any(other != on and abs(other - on) < interval_days for other in taken):
                too_soon[pair] = True
            else:
                taken.append(on)
    result[rows[too_soon[pair_of_row]]] = False
    return result


def _persons(column: pd.Series) -> Distinct:
    """Rows grouped by person key the way a dict groups its keys (1, 1.0 and True are one key):
    the interval rule keeps each person's doses under their key."""
    if _is_text(column):
        return _factorize(column)
    keys: dict[Any, int] = {}
    values = [None if gone else v for v, gone in zip(column.tolist(), column.isna().tolist(), strict=True)]
    codes = [keys.setdefault(v, len(keys)) for v in values]
    return np.asarray(codes, dtype=np.int64), list(keys)


def _is_text(column: pd.Series) -> bool:
    """Texts with missing values only, where pandas' hashing and Python's equality agree."""
    if column.dtype == object:
        return pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty")
    return isinstance(column.dtype, pd.StringDtype)


def _history_dates(frame: pd.DataFrame, history: list[dict]) -> dict[Any, list[int]]:
    """Earlier doses per person (date ordinals), except the old versions of records validated now."""
    if not history:
        return {}
    srids = {h["source_record_id"] for h in history}
    if _is_text(frame["source_record_id"]):  # only rows that share a record id can be an old version
        wanted = frame["source_record_id"].isin([s for s in srids if isinstance(s, str)]).to_numpy()
        if any(not isinstance(s, str) for s in srids):
            wanted = wanted | frame["source_record_id"].isna().to_numpy()
        candidates = frame.loc[wanted, ["source", "source_record_id"]]
    else:
        candidates = frame[["source", "source_record_id"]]
    candidates = candidates.astype(object).where(candidates.notna(), None)
    validating = set(zip(candidates["source"], candidates["source_record_id"], strict=True))
    parsed: dict[Any, int] = {}
    kept: dict[Any, list[int]] = {}
    for h in history:
        text = h["vaccination_date"]
        if text not in parsed:
            parsed[text] = _ordinal(parse_date(text))
        if parsed[text] and (h["source"], h["source_record_id"]) not in validating:  # not its own old version
            kept.setdefault(h["person_key"], []).append(parsed[text])
    return kept


# What GX reports per failing expectation: BOOLEAN_ONLY with the unexpected-index query is the
# cheapest format that names every failing row, not a sample. For pandas the query lists the index
# labels of all unexpected rows, and the frame GX gets is indexed by position, so a label is a
# position into `id`. Measured on 200,000 rows (7 % failing): COMPLETE with
# unexpected_index_column_names 1.2 s (a dict per failing row, built in Python, and the unexpected
# values counted), COMPLETE with index labels and no values 0.37 s, this 0.28 s; SUMMARY names
# only 20 rows per expectation and still costs 1.2 s.
RESULT_FORMAT = {"result_format": "BOOLEAN_ONLY", "return_unexpected_index_query": True}
_QUERY = re.compile(r"^df\.filter\(items=(\[[^\]]*\]), axis=0\)$")
_MAX_SUITES = 4


# Each rule as (column, code), in the order the expectations were always added. Every column
# but two holds a boolean that must be True; `resolved_npl_id` must be in the catalog and
# `batch_given` must not be null.
EXPECTATIONS = (
    ("person_id_format_ok", "PERSONID-FORMAT"),
    ("person_ok", "PERSONID-FORMAT"),
    ("date_format_ok", "DATE-FORMAT"),
    ("date_ok", "DATE-FORMAT"),
    ("caregiver_format_ok", "UNIT-FORMAT"),
    ("care_unit_format_ok", "UNIT-FORMAT"),
    ("care_unit_length_ok", "UNIT-FORMAT"),
    ("caregiver_length_ok", "UNIT-FORMAT"),
    ("resolved_npl_id", "VACCINE-UNKNOWN"),
    ("date_plausible", "DATE-IMPLAUSIBLE"),
    ("batch_given", "BATCH-MISSING"),
    ("batch_matches", "BATCH-MISMATCH"),
    ("dose_present", "DOSE-MISSING"),
    ("dose_interval_ok", "DOSE-INTERVAL"),
)


def build_suite(catalog: Catalog, name: str = "nvr_register_rules"):
    """The expectation suite; each expectation's meta names the register's error code.

    The checks by pattern and length are derived boolean columns holding GX's own verdict per
    distinct value (`FORMAT_CHECKS`): GX checks a boolean instead of running a regex over every
    row, and each check is still an expectation of its own carrying its code.
    """
    import great_expectations as gx

    e = gx.expectations
    suite = gx.ExpectationSuite(name=name)
    for column, code in EXPECTATIONS:
        meta = {"code": code}
        if column == "resolved_npl_id":
            exp = e.ExpectColumnValuesToBeInSet(column=column, value_set=sorted(catalog.products), meta=meta)
        elif column == "batch_given":
            exp = e.ExpectColumnValuesToNotBeNull(column=column, meta=meta)
        else:
            exp = e.ExpectColumnValuesToBeInSet(column=column, value_set=[True], meta=meta)
        suite.add_expectation(exp)
    return suite


class _Checker:
    """One GX context, data source, asset and batch definition per process, and one suite per
    catalog: building them costs far more than validating a chunk of rows."""

    def __init__(self) -> None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no calls home: loopback only
        import great_expectations as gx

        logging.getLogger("great_expectations").setLevel(logging.WARNING)
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = {"globally": False, "metric_calculations": False}
        asset = self.context.data_sources.add_pandas("vaxreport").add_dataframe_asset("records")
        self.batch_definition = asset.add_batch_definition_whole_dataframe("window")
        self.suites: OrderedDict[tuple[str, ...], Any] = OrderedDict()

    def suite(self, catalog: Catalog):
        key = tuple(sorted(catalog.products))
        if key in self.suites:
            self.suites.move_to_end(key)
            return self.suites[key]
        digest = hashlib.sha256("\n".join(key).encode()).hexdigest()[:12]
        suite = self.context.suites.add(build_suite(catalog, f"nvr_register_rules_{digest}"))
        self.suites[key] = suite
        if len(self.suites) > _MAX_SUITES:  # a long-lived worker sees a new catalog now and then
            _, old = self.suites.popitem(last=False)
            self.context.suites.delete(old.name)
        return suite

    def validate(self, frame: pd.DataFrame, catalog: Catalog):
        batch = self.batch_definition.get_batch(batch_parameters={"dataframe": frame})
        return batch.validate(self.suite(catalog), result_format=RESULT_FORMAT)


_checker: _Checker | None = None
_lock = threading.Lock()  # one data source: its batch is shared state


def _unexpected_positions(result) -> list[int]:
    """Positions of the rows an expectation found unexpected. An expectation GX could not evaluate
    fails the validation instead of passing every row unchecked."""
    query = (result.result or {}).get("unexpected_index_query")
    match = _QUERY.match(query) if query is not None else None
    if match is None:
        if query is None and result.success:
            return []
        config = result.expectation_config
        raise RuntimeError(f"GX gave no failing rows for {config.type} on {config.kwargs.get('column')}")
    return json.loads(match.group(1))


def run_suite(df: pd.DataFrame, catalog: Catalog) -> tuple[dict[int, str], dict]:
    """Validate; return the first failing code per row id, and a JSON-able summary (counts only)."""
    global _checker
    # only the checked columns, indexed by position: GX fingerprints every column it is given
    # (twice per validation) and names failing rows by their index label
    columns = ["id", *dict.fromkeys(column for column, _ in EXPECTATIONS)]
    frame = df[columns].set_axis(pd.RangeIndex(len(df)), axis=0)
    with _lock:
        if _checker is None:
            _checker = _Checker()
        result = _checker.validate(frame, catalog)
    ranks = {code: rank for rank, code in enumerate(RULE_ORDER)}
    first_rank = np.full(len(frame), len(RULE_ORDER), dtype=np.int64)
    by_expectation: dict[str, int] = {}
    for res in result.results:
        code = res.expectation_config.meta["code"]
        positions = np.asarray(_unexpected_positions(res), dtype=np.int64)
        by_expectation[code] = by_expectation.get(code, 0) + len(positions)
        np.minimum.at(first_rank, positions, ranks[code])
    failing = np.flatnonzero(first_rank < len(RULE_ORDER))
    per_id = pd.Series(first_rank[failing]).groupby(frame["id"].to_numpy()[failing]).min()  # ids may repeat
    first = {int(row_id): RULE_ORDER[rank] for row_id, rank in per_id.items()}
    summary = {
        "rows": len(df),
        "success": bool(result.success),
        "failed_rows": len(first),
        "unexpected_by_code": by_expectation,
    }
    return first, summary


def validate_frame(
    frame: pd.DataFrame,
    catalog: Catalog,
    registered_day: date,
    history: History,
    interval_days: int = DEFAULT_DOSE_INTERVAL_DAYS,
) -> tuple[dict[int, str], dict]:
    """Derive and validate one chunk: the first failing code per row id, and the summary.

    A caller validating a large day in chunks passes each chunk with the history of its persons
    (or a lookup of it); the GX context and suite built for the first chunk serve every later one.
    """
    return run_suite(derive_columns(frame, catalog, registered_day, history, interval_days), catalog)
