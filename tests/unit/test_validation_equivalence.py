"""Validation gives every row the code it always gave, now that rules run once per distinct value.

The expectations are explicit: the synthetic generator's ground truth for each injected defect,
and hand-made rows whose codes and per-code counts are those of the row-by-row implementation
this one replaced (the counts include its quirks: a row failing two expectations of one code is
counted twice, and a missing batch is counted under BATCH-MISMATCH as well).
"""

from datetime import date, timedelta
from types import SimpleNamespace

import pandas as pd
import pytest
from stdnum import luhn

from vaxreport.privacy import person_key
from vaxreport.registry.catalog import Catalog, Product
from vaxreport.synthetic.generate import DEFECTS, generate_day, samordningsnummer_for
from vaxreport.validation import suite
from vaxreport.validation.bench import canonical_rows, synthetic_catalog

pytestmark = pytest.mark.unit
DAY = date(2026, 11, 20)
ADULT, CHILD = "189001019802", "201401012396"
ADULT_SAM = samordningsnummer_for(ADULT)  # a person key of its own
NEVER_ISSUED = ADULT[:8] + "000" + luhn.calc_check_digit(ADULT[2:8] + "000")  # födelsenummer 000
CATALOG = Catalog(
    {
        "C1": Product("C1", "Comirnaty JN.1", "covid19", frozenset({"HH1", "HH2"})),
        "C2": Product("C2", "Spikevax JN.1", "covid19", frozenset({"SP1"})),
        "P1": Product("P1", "Priorix", "child", frozenset({"PR1"})),
        "V1": Product("V1", "Prevenar 20", "pneumococcal", frozenset({"PV1"})),
    }
)


def _expected(records) -> dict[str, str | None]:
    return {r.record_id: r.expected_code if r.expected_state == "rejected_local" else None for r in records}


def _codes(frame: pd.DataFrame, failures: dict[int, str]) -> dict[str, str | None]:
    return {srid: failures.get(int(i)) for i, srid in zip(frame["id"], frame["source_record_id"], strict=True)}


@pytest.fixture(scope="module")
def generated():
    """Three days of records, about a third with a defect: every defect the generator injects
    occurs (UNIT-FORMAT, which it does not inject, is among the hand-made rows below)."""
    records = []
    for back in range(3):
        records += generate_day(DAY - timedelta(days=back), records=900, seed=40 + back, defect_rate=0.35)
    records = [r for r in records if r.expected_state != "excluded"]  # out of scope: never validated
    return records


def test_every_generated_row_gets_its_ground_truth_code(generated):
    frame = pd.DataFrame(canonical_rows(generated))
    failures, summary = suite.validate_frame(frame, synthetic_catalog(), DAY, [])
    expected = _expected(generated)
    got = _codes(frame, failures)
    assert {k: (got[k], v) for k, v in expected.items() if got[k] != v} == {}
    local = {code for state, code in DEFECTS.values() if state == "rejected_local"}
    assert {c for c in expected.values() if c} == local  # each failure class is exercised
    assert summary["rows"] == len(frame)
    assert summary["failed_rows"] == sum(c is not None for c in expected.values())
    assert summary["success"] is False


def test_chunks_validated_one_after_another_give_the_same_codes(generated):
    """The GX context and suite built for the first chunk serve the next ones; ids need not be
    positions, and the frame's own index does not matter."""
    frame = pd.DataFrame(canonical_rows(generated, first_id=5000))
    expected = _expected(generated)
    got: dict[str, str | None] = {}
    for day_text in sorted(frame["source_record_id"].str[4:12].unique()):
        chunk = frame[frame["source_record_id"].str[4:12] == day_text]  # a day's records stay together
        chunk = chunk.set_axis(pd.Index(range(len(chunk)))[::-1] * 7, axis=0)
        failures, _ = suite.validate_frame(chunk, synthetic_catalog(), DAY, [])
        got |= _codes(chunk, failures)
    assert got == expected


def row(i, **kw):
    base = {
        "id": i,
        "source": "urn:t",
        "source_record_id": f"R{i:03d}",
        "person_id": ADULT,
        "vaccine_name": "x",
        "npl_id": "C1",
        "batch": "HH1",
        "dose_number": 1,
        "vaccination_date": "2026-11-20",
        "caregiver_hsa_id": "SE2321000016-0001",
        "care_unit_hsa_id": "SE2321000016-VC02",
        "record_status": "completed",
    }
    base.update(kw)
    base["person_key"] = person_key(base["person_id"]) if base["person_id"] else "none"
    return base


EDGE_ROWS = [
    (row(1), None),
    (row(2, person_id="18900101980"), "PERSONID-FORMAT"),  # pattern and check: counted twice
    (row(3, person_id=ADULT_SAM, dose_number=2, vaccination_date="2026-10-01"), None),
    (row(4, person_id=ADULT[:-1] + "3"), "PERSONID-FORMAT"),
    (row(5, person_id=NEVER_ISSUED), "PERSONID-FORMAT"),
    (row(6, person_id=None), "PERSONID-FORMAT"),  # no value: the pattern check skips it
    (row(7, person_id="١٨٩٠٠١٠١٩٨٠٢"), "PERSONID-FORMAT"),  # digits, but not ASCII ones
    (row(8, vaccination_date="2026-1-5"), "DATE-FORMAT"),
    (row(9, vaccination_date="2026-02-30"), "DATE-FORMAT"),
    (row(10, vaccination_date=None, caregiver_hsa_id=None), "DATE-FORMAT"),  # before UNIT-FORMAT
    (row(11, care_unit_hsa_id="Vårdcentral"), "UNIT-FORMAT"),
    (row(12, caregiver_hsa_id="SE2321000016-" + "A" * 19), "UNIT-FORMAT"),  # 32 characters
    (row(13, caregiver_hsa_id="SE2321000016-" + "A" * 18), None),  # 31 characters
    (row(14, care_unit_hsa_id=None), "UNIT-FORMAT"),
    (row(15, npl_id=None, vaccine_name="Comirnaty JN1"), "VACCINE-UNKNOWN"),
    (row(16, npl_id="Q9"), "VACCINE-UNKNOWN"),
    (row(17, npl_id="", vaccine_name="  priorix ", batch="PR1", person_id=CHILD, dose_number=None), None),
    (row(18, vaccination_date="2066-11-20"), "DATE-IMPLAUSIBLE"),
    (row(19, npl_id="P1", person_id=CHILD, vaccination_date="2012-12-31", batch="PR1"), "DATE-IMPLAUSIBLE"),
    (row(20, npl_id="V1", batch="PV1", vaccination_date="2022-11-30"), "DATE-IMPLAUSIBLE"),
    (row(21, person_id=CHILD, npl_id="P1", batch="PR1", vaccination_date="2013-12-31"), "DATE-IMPLAUSIBLE"),
    (row(22, batch="  "), "BATCH-MISSING"),  # counted under BATCH-MISMATCH as well
    (row(23, batch=None), "BATCH-MISSING"),
    (row(24, batch="PR1"), "BATCH-MISMATCH"),
    (row(25, npl_id="Q9", batch="PR1"), "VACCINE-UNKNOWN"),
    (row(26, dose_number=None), "DOSE-MISSING"),
    (row(27, dose_number=100), "DOSE-MISSING"),
    (row(28, npl_id="P1", batch="PR1", person_id=CHILD, dose_number=None, vaccination_date="2026-11-19"), None),
    (row(29, person_id=ADULT_SAM, npl_id="C2", batch="SP1", vaccination_date="2026-10-15"), "DOSE-INTERVAL"),
    (row(30, person_id=None, vaccination_date="2066-1-1", care_unit_hsa_id="", batch=None), "PERSONID-FORMAT"),
]
# per expectation code, how many unexpected values the suite reported (the replaced version's counts)
EDGE_COUNTS = {
    "PERSONID-FORMAT": 7,
    "DATE-FORMAT": 7,
    "UNIT-FORMAT": 5,
    "VACCINE-UNKNOWN": 3,
    "DATE-IMPLAUSIBLE": 4,
    "BATCH-MISSING": 3,
    "BATCH-MISMATCH": 4,
    "DOSE-MISSING": 2,
    "DOSE-INTERVAL": 1,
}


def test_edge_rows_get_the_codes_and_counts_they_always_got():
    rows = [r for r, _ in EDGE_ROWS]
    derived = suite.derive_columns(pd.DataFrame(rows), CATALOG, DAY, [])
    failures, summary = suite.run_suite(derived, CATALOG)
    assert {r["id"]: failures.get(r["id"]) for r in rows} == {r["id"]: code for r, code in EDGE_ROWS}
    assert summary == {
        "rows": len(rows),
        "success": False,
        "failed_rows": sum(code is not None for _, code in EDGE_ROWS),
        "unexpected_by_code": EDGE_COUNTS,
    }
    assert list(derived["resolved_npl_id"][14:17]) == ["(unresolved)", "Q9", "P1"]


def test_a_clean_frame_succeeds_with_zero_counts():
    failures, summary = suite.validate_frame(pd.DataFrame([row(1), row(2, person_id=CHILD)]), CATALOG, DAY, [])
    assert failures == {}
    assert summary == {
        "rows": 2,
        "success": True,
        "failed_rows": 0,
        "unexpected_by_code": dict.fromkeys(EDGE_COUNTS, 0),
    }


def test_every_failing_row_is_named_not_a_sample():
    rows = [row(i, person_id="1890010198") for i in range(1, 121)] + [row(500)]
    failures, summary = suite.validate_frame(pd.DataFrame(rows), CATALOG, DAY, [])
    assert failures == dict.fromkeys(range(1, 121), "PERSONID-FORMAT")
    assert summary["unexpected_by_code"]["PERSONID-FORMAT"] == 240


def test_a_repeated_id_gets_the_first_code_of_all_its_rows():
    rows = [row(7, dose_number=None), row(7, batch="PR1"), row(8)]
    failures, _ = suite.validate_frame(pd.DataFrame(rows), CATALOG, DAY, [])
    assert failures == {7: "BATCH-MISMATCH"}


def _interval(rows, history=(), days=21):
    failures, _ = suite.validate_frame(pd.DataFrame(rows), CATALOG, DAY, list(history), days)
    return {r["source_record_id"]: failures.get(r["id"]) for r in rows}


def test_a_dose_too_soon_is_not_kept_so_a_later_one_is_measured_from_the_earlier_kept_dose():
    days = ["2026-10-01", "2026-10-11", "2026-10-21", "2026-10-31", "2026-10-31", "2026-11-20"]
    rows = [row(i, vaccination_date=d, dose_number=i) for i, d in enumerate(days, start=1)]
    assert _interval(rows[::-1]) == {
        "R001": None,
        "R002": "DOSE-INTERVAL",  # 10 days after R001
        "R003": "DOSE-INTERVAL",  # 20 days after R001 (R002 was not kept)
        "R004": None,  # 30 days after R001
        "R005": None,  # same date as R004: not another dose
        "R006": "DOSE-INTERVAL",  # 20 days after R004
    }
    assert _interval(rows, days=10) == dict.fromkeys(_interval(rows, days=10), None)


def test_interval_spans_products_and_ignores_voids_and_rows_rejected_for_another_reason():
    rows = [
        row(1, vaccination_date="2026-11-01"),
        row(2, npl_id="C2", batch="SP1", vaccination_date="2026-11-15", dose_number=2),
        row(3, person_id=CHILD, vaccination_date="2026-11-01", record_status="entered-in-error"),
        row(4, person_id=CHILD, vaccination_date="2026-11-10", batch="SP1"),
        row(5, person_id=CHILD, vaccination_date="2026-11-15"),
        row(6, person_id=CHILD, npl_id="P1", batch="PR1", vaccination_date="2026-11-16", dose_number=None),
    ]
    assert _interval(rows) == {
        "R001": None,
        "R002": "DOSE-INTERVAL",
        "R003": None,
        "R004": "BATCH-MISMATCH",
        "R005": None,
        "R006": None,
    }


def test_interval_counts_earlier_and_later_doses_on_their_way_but_not_a_records_own_old_version():
    adult, child = person_key(ADULT), person_key(CHILD)
    history = [
        {"person_key": adult, "vaccination_date": "2026-12-01", "source": "urn:t", "source_record_id": "X1"},
        {"person_key": child, "vaccination_date": "2026-11-12", "source": "urn:t", "source_record_id": "R002"},
        {"person_key": child, "vaccination_date": "2026-11-12", "source": "urn:other", "source_record_id": "R003"},
        {"person_key": child, "vaccination_date": "not a date", "source": "urn:t", "source_record_id": "X2"},
    ]
    rows = [
        row(1, vaccination_date="2026-11-15"),
        row(2, person_id=CHILD, vaccination_date="2026-11-01"),
        row(3, person_id=CHILD, vaccination_date="2026-11-01", source="urn:another"),
    ]
    assert _interval(rows, history) == {"R001": "DOSE-INTERVAL", "R002": "DOSE-INTERVAL", "R003": "DOSE-INTERVAL"}
    assert _interval(rows[:2], history[:2]) == {"R001": "DOSE-INTERVAL", "R002": None}


def test_an_expectation_gx_could_not_evaluate_fails_the_validation_instead_of_passing_its_rows():
    config = SimpleNamespace(type="expect_column_values_to_be_in_set", kwargs={"column": "person_ok"})
    with pytest.raises(RuntimeError, match="person_ok"):
        suite._unexpected_positions(SimpleNamespace(result={}, success=False, expectation_config=config))
    passed = SimpleNamespace(result={"unexpected_index_query": "df.filter(items=[], axis=0)"}, success=True)
    assert suite._unexpected_positions(passed) == []
