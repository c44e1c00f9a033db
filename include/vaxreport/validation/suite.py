"""The register's rules as a Great Expectations suite, run on one window's records.

GX checks columns; some rules need more than a column (a Luhn digit, a birth date, a batch that
must belong to *this* vaccine, the interval to a person's previous dose). Those are computed first
as derived boolean columns, then GX checks every rule the same way, and each failing expectation
carries the register's error code in its `meta`. A row failing several rules gets the first one in
the register's own order, so local and register rejections of one fault carry one code.
"""

from __future__ import annotations

import logging
import os
import re
from datetime import date, timedelta

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


def derive_columns(
    frame: pd.DataFrame,
    catalog: Catalog,
    registered_day: date,
    history: list[dict],
    interval_days: int = DEFAULT_DOSE_INTERVAL_DAYS,
) -> pd.DataFrame:
    """Add the derived columns the suite checks, plus `resolved_npl_id` for the bundle builder."""
    # pandas 3 turns missing strings into NaN (truthy); the rules below want None
    df = frame.astype(object).where(frame.notna(), None)
    births = df["person_id"].map(person_birth_date)
    dates = df["vaccination_date"].map(parse_date)
    products = [catalog.resolve(n, name) for n, name in zip(df["npl_id"], df["vaccine_name"], strict=True)]
    # GX skips empty values in set checks, so an unresolvable vaccine gets a visible placeholder
    df["resolved_npl_id"] = [p.npl_id if p else (n or UNRESOLVED) for p, n in zip(products, df["npl_id"], strict=True)]
    df["person_ok"] = births.notna()
    df["caregiver_hsa_id"] = df["caregiver_hsa_id"].fillna("")
    df["care_unit_hsa_id"] = df["care_unit_hsa_id"].fillna("")
    df["units_ok"] = [
        bool(re.match(HSA_ID, a)) and bool(re.match(HSA_ID, b)) and len(a) <= 31 and len(b) <= 31
        for a, b in zip(df["caregiver_hsa_id"], df["care_unit_hsa_id"], strict=True)
    ]
    df["vaccination_date"] = df["vaccination_date"].fillna("")
    df["date_ok"] = dates.notna()  # strptime would take 2026-1-5; the register wants YYYY-MM-DD
    df["batch_given"] = df["batch"].map(lambda b: b if b and str(b).strip() else None)

    plausible, lot_ok, dose_ok = [], [], []
    for product, on, born, lot, dose in zip(products, dates, births, df["batch_given"], df["dose_number"], strict=True):
        ok = True
        if on is not None:
            ok = on <= registered_day and (born is None or on >= born)
            if product is not None and product.programme in PROGRAMME_START:
                ok = ok and on.isoformat() >= PROGRAMME_START[product.programme]
        plausible.append(ok)
        lot_ok.append(product is None or lot is None or lot in product.lots)
        is_covid = product is not None and product.programme == "covid19"
        dose_ok.append(not is_covid or (pd.notna(dose) and 1 <= int(dose) <= 99))
    df["date_plausible"] = plausible
    df["batch_matches"] = lot_ok
    df["dose_present"] = dose_ok
    df["dose_interval_ok"] = _dose_interval_ok(df, products, dates, history, catalog, interval_days)
    return df


def _dose_interval_ok(
    df: pd.DataFrame, products: list, dates: pd.Series, history: list[dict], catalog: Catalog, interval_days: int
) -> list[bool]:
    """COVID-19 doses must be `interval_days` apart from the person's other doses on other dates.

    Records are taken in the order they will be sent (date, then record id); a dose is compared
    with the doses already accepted or on their way, and with the earlier ones of this window.
    """
    covid = {npl for npl, p in catalog.products.items() if p.programme == "covid19"}
    validating = set(zip(df["source"], df["source_record_id"], strict=True))
    kept: dict[str, list[date]] = {}
    for h in history:
        d = parse_date(h["vaccination_date"])
        if d is not None and (h["source"], h["source_record_id"]) not in validating:  # not its own old version
            kept.setdefault(h["person_key"], []).append(d)
    result = [True] * len(df)
    order = sorted(
        range(len(df)), key=lambda i: (str(df["vaccination_date"].iat[i]), str(df["source_record_id"].iat[i]))
    )
    gap = timedelta(days=interval_days)
    for i in order:
        product, on = products[i], dates.iat[i]
        if product is None or product.npl_id not in covid or on is None or df["record_status"].iat[i] != "completed":
            continue  # the register checks intervals between given doses only
        if not (
            df["person_ok"].iat[i]
            and df["units_ok"].iat[i]
            and df["date_plausible"].iat[i]
            and df["batch_given"].iat[i]
            and df["batch_matches"].iat[i]
            and df["dose_present"].iat[i]
        ):
            continue  # rejected for another reason: it will not reach the register
        person = df["person_key"].iat[i]
        if any(other != on and abs(other - on) < gap for other in kept.get(person, [])):
            result[i] = False
            continue
        kept.setdefault(person, []).append(on)
    return result


def build_suite(catalog: Catalog):
    """The expectation suite; each expectation's meta names the register's error code."""
    import great_expectations as gx

    e = gx.expectations
    suite = gx.ExpectationSuite(name="nvr_register_rules")
    for exp in (
        e.ExpectColumnValuesToMatchRegex(column="person_id", regex=r"^\d{12}$", meta={"code": "PERSONID-FORMAT"}),
        e.ExpectColumnValuesToBeInSet(column="person_ok", value_set=[True], meta={"code": "PERSONID-FORMAT"}),
        e.ExpectColumnValuesToMatchRegex(
            column="vaccination_date", regex=r"^\d{4}-\d{2}-\d{2}$", meta={"code": "DATE-FORMAT"}
        ),
        e.ExpectColumnValuesToBeInSet(column="date_ok", value_set=[True], meta={"code": "DATE-FORMAT"}),
        e.ExpectColumnValuesToMatchRegex(column="caregiver_hsa_id", regex=HSA_ID, meta={"code": "UNIT-FORMAT"}),
        e.ExpectColumnValuesToMatchRegex(column="care_unit_hsa_id", regex=HSA_ID, meta={"code": "UNIT-FORMAT"}),
        e.ExpectColumnValueLengthsToBeBetween(column="care_unit_hsa_id", max_value=31, meta={"code": "UNIT-FORMAT"}),
        e.ExpectColumnValueLengthsToBeBetween(column="caregiver_hsa_id", max_value=31, meta={"code": "UNIT-FORMAT"}),
        e.ExpectColumnValuesToBeInSet(
            column="resolved_npl_id", value_set=sorted(catalog.products), meta={"code": "VACCINE-UNKNOWN"}
        ),
        e.ExpectColumnValuesToBeInSet(column="date_plausible", value_set=[True], meta={"code": "DATE-IMPLAUSIBLE"}),
        e.ExpectColumnValuesToNotBeNull(column="batch_given", meta={"code": "BATCH-MISSING"}),
        e.ExpectColumnValuesToBeInSet(column="batch_matches", value_set=[True], meta={"code": "BATCH-MISMATCH"}),
        e.ExpectColumnValuesToBeInSet(column="dose_present", value_set=[True], meta={"code": "DOSE-MISSING"}),
        e.ExpectColumnValuesToBeInSet(column="dose_interval_ok", value_set=[True], meta={"code": "DOSE-INTERVAL"}),
    ):
        suite.add_expectation(exp)
    return suite


def run_suite(df: pd.DataFrame, catalog: Catalog) -> tuple[dict[int, str], dict]:
    """Validate; return the first failing code per row id, and a JSON-able summary (counts only)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no calls home: loopback only
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.WARNING)

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    asset = context.data_sources.add_pandas("vaxreport").add_dataframe_asset("records")
    batch_definition = asset.add_batch_definition_whole_dataframe("window")
    suite = context.suites.add(build_suite(catalog))
    batch = batch_definition.get_batch(batch_parameters={"dataframe": df})
    result = batch.validate(suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["id"]})
    failures: dict[int, set[str]] = {}
    by_expectation: dict[str, int] = {}
    for res in result.results:
        code = res.expectation_config.meta["code"]
        unexpected = res.result.get("unexpected_index_list") or []
        by_expectation[code] = by_expectation.get(code, 0) + len(unexpected)
        for item in unexpected:
            failures.setdefault(int(item["id"]), set()).add(code)
    first = {row_id: next(c for c in RULE_ORDER if c in codes) for row_id, codes in failures.items()}
    summary = {
        "rows": len(df),
        "success": bool(result.success),
        "failed_rows": len(first),
        "unexpected_by_code": by_expectation,
    }
    return first, summary
