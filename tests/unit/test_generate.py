from collections import Counter
from datetime import date
from itertools import pairwise

import pytest

from vaxreport.synthetic.generate import DEFECTS, generate_day
from vaxreport.validation.suite import person_birth_date

pytestmark = pytest.mark.unit
DAY = date(2026, 11, 21)


def test_same_day_and_seed_give_the_same_records():
    assert generate_day(DAY, records=300, seed=7) == generate_day(DAY, records=300, seed=7)
    assert generate_day(DAY, records=300, seed=7) != generate_day(DAY, records=300, seed=8)


def test_every_defect_kind_appears_with_its_truth():
    records = generate_day(DAY, records=3000, seed=3, defect_rate=0.2)
    seen = Counter(r.defect for r in records)
    assert set(DEFECTS) <= set(seen)
    for r in records:
        if r.defect in DEFECTS:
            assert (r.expected_state, r.expected_code) == DEFECTS[r.defect]
    assert seen["out_of_scope"] > 0
    assert len(records) == 3000


def test_clean_records_are_valid_and_only_from_the_test_list():
    from vaxreport.synthetic.generate import _persons

    persons = set(_persons())
    for r in generate_day(DAY, records=1000, seed=5):
        if r.defect == "bad_check_digit":
            assert person_birth_date(r.patient_id) is None
            continue
        born = person_birth_date(r.patient_id)
        assert born is not None
        if int(r.patient_id[6:8]) > 60:  # samordningsnummer synthesised from a test number
            continue
        assert r.patient_id in persons


def test_late_registrations_and_several_caregivers():
    records = generate_day(DAY, records=2000, seed=1)
    dates = Counter(r.vaccination_date for r in records if r.defect == "none")
    assert dates[DAY.isoformat()] < sum(dates.values())  # some were given earlier
    assert len({r.caregiver_hsa_id for r in records}) >= 3
    assert len({r.care_unit_hsa_id for r in records}) >= 6
    covid = [r for r in records if r.programme == "covid19" and r.defect == "none"]
    assert covid
    assert all(r.dose_number for r in covid)


def test_defect_rate_zero_gives_no_defects():
    records = generate_day(DAY, records=500, seed=2, defect_rate=0.0, out_of_scope_rate=0.0)
    assert {r.defect for r in records} == {"none"}


@pytest.mark.slow
def test_days_never_collide_by_accident_over_two_months():
    """Across 50 consecutive days, the only same person+vaccine+date pairs are the injected double
    registrations, and the only COVID-19 doses under 21 days apart are the injected too-soon pairs:
    otherwise the ground truth of a multi-day run would be wrong."""
    from datetime import timedelta

    keys: dict[tuple[str, str, str], str] = {}
    covid: dict[str, list[tuple[date, str]]] = {}
    for offset in range(50):
        day = date(2026, 9, 1) + timedelta(days=offset)
        for r in generate_day(day, records=1500, seed=1):
            if r.defect not in {"none", "duplicate_registration"}:
                continue
            key = (r.patient_id, r.npl_id or "", r.vaccination_date)
            if key in keys:
                assert r.defect == "duplicate_registration", (keys[key], r.record_id)
            keys[key] = r.record_id
            if r.programme == "covid19":
                covid.setdefault(r.patient_id, []).append((date.fromisoformat(r.vaccination_date), r.record_id))
    for doses in covid.values():
        doses.sort()
        for (a, ida), (b, idb) in pairwise(doses):
            assert a == b or (b - a).days >= 21, (ida, idb)
