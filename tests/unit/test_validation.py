"""The register's rules as the GX suite applies them, on hand-made rows."""

from datetime import date

import pandas as pd
import pytest

from vaxreport.privacy import person_key
from vaxreport.registry.catalog import Catalog, Product
from vaxreport.validation.suite import derive_columns, run_suite

pytestmark = pytest.mark.unit
DAY = date(2026, 11, 21)
CATALOG = Catalog(
    {
        "C1": Product("C1", "Comirnaty JN.1", "covid19", frozenset({"HH1", "HH2"})),
        "P1": Product("P1", "Priorix", "child", frozenset({"PR1"})),
        "V1": Product("V1", "Prevenar 20", "pneumococcal", frozenset({"PV1"})),
    }
)
ADULT, CHILD = "189001019802", "201401012396"


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
        "vaccination_date": "2026-11-21",
        "caregiver_hsa_id": "SE2321000016-0001",
        "care_unit_hsa_id": "SE2321000016-VC02",
        "record_status": "completed",
    }
    base.update(kw)
    base["person_key"] = person_key(base["person_id"])
    return base


def codes(rows, history=()):
    frame = pd.DataFrame(rows)
    derived = derive_columns(frame, CATALOG, DAY, list(history))
    failures, summary = run_suite(derived, CATALOG)
    assert summary["rows"] == len(rows)
    return {r["source_record_id"]: failures.get(r["id"]) for r in rows}


def test_one_row_per_rule_gets_the_registers_code():
    got = codes(
        [
            row(1),
            row(2, person_id="189001019803"),
            row(3, vaccination_date="2026-1-5"),
            row(4, vaccination_date="2026-02-30"),
            row(5, care_unit_hsa_id="Vårdcentral"),
            row(6, npl_id=None, vaccine_name="Comirnaty JN1"),
            row(7, vaccination_date="2066-11-21"),
            row(8, npl_id="P1", person_id=CHILD, vaccination_date="2012-12-31", batch="PR1", dose_number=None),
            row(9, batch="  "),
            row(10, batch="PR1"),
            row(11, dose_number=None),
            row(12, npl_id=None, vaccine_name="  priorix ", batch="PR1", person_id=CHILD, dose_number=None),
            row(13, npl_id="V1", batch="PV1", dose_number=None, vaccination_date="2022-11-30"),
        ]
    )
    assert got == {
        "R001": None,
        "R002": "PERSONID-FORMAT",
        "R003": "DATE-FORMAT",
        "R004": "DATE-FORMAT",
        "R005": "UNIT-FORMAT",
        "R006": "VACCINE-UNKNOWN",
        "R007": "DATE-IMPLAUSIBLE",
        "R008": "DATE-IMPLAUSIBLE",
        "R009": "BATCH-MISSING",
        "R010": "BATCH-MISMATCH",
        "R011": "DOSE-MISSING",
        "R012": None,
        "R013": "DATE-IMPLAUSIBLE",
    }


def test_the_later_of_two_close_doses_is_rejected_and_far_doses_pass():
    got = codes(
        [
            row(1, vaccination_date="2026-11-14"),
            row(2, vaccination_date="2026-11-20", dose_number=2),
            row(3, person_id=CHILD, vaccination_date="2026-10-01"),
            row(4, person_id=CHILD, vaccination_date="2026-11-20", dose_number=2),
        ]
    )
    assert got == {"R001": None, "R002": "DOSE-INTERVAL", "R003": None, "R004": None}


def test_interval_counts_doses_already_sent_but_not_the_records_own_old_version():
    sent = {
        "person_key": person_key(ADULT),
        "vaccination_date": "2026-11-10",
        "source": "urn:t",
        "source_record_id": "OLD",
    }
    own_old = {**sent, "vaccination_date": "2026-11-17", "source_record_id": "R002"}
    got = codes(
        [row(1, vaccination_date="2026-11-20"), row(2, person_id=CHILD, vaccination_date="2026-11-20")],
        history=[sent, {**own_old, "person_key": person_key(CHILD)}],
    )
    assert got == {"R001": "DOSE-INTERVAL", "R002": None}


def test_doses_that_will_not_reach_the_register_do_not_block_others():
    got = codes(
        [
            row(1, vaccination_date="2026-11-14", care_unit_hsa_id=""),
            row(2, vaccination_date="2026-11-15", record_status="entered-in-error"),
            row(3, vaccination_date="2026-11-20"),
        ]
    )
    assert got == {"R001": "UNIT-FORMAT", "R002": None, "R003": None}
