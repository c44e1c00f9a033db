"""Property-based tests: arbitrary journal rows and arbitrary register answers never crash the
pipeline's readers and never lose or invent a record."""

import string
from datetime import date, datetime

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaxreport.registry.catalog import Catalog, Product
from vaxreport.registry.outcomes import interpret
from vaxreport.sources.mapping import KINDS, load_kind, to_canonical
from vaxreport.validation.suite import derive_columns

pytestmark = pytest.mark.unit

junk = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.text(alphabet=string.digits + "-+ ", max_size=14),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.booleans(),
    st.binary(max_size=20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.dates(),
)


def _columns(kind_name: str) -> list[str]:
    kind = load_kind(kind_name)
    return sorted({spec["column"] for spec in kind.fields.values()} | {"registrerad", "registered_at", "recorded_at"})


@settings(max_examples=300, deadline=None)
@given(kind_name=st.sampled_from(KINDS), data=st.data())
def test_any_journal_row_becomes_a_canonical_record_without_raising(kind_name, data):
    row = {col: data.draw(junk, label=col) for col in _columns(kind_name)}
    record = to_canonical(load_kind(kind_name), row, "urn:test")
    assert record["source"] == "urn:test"
    assert record["record_status"] in {"completed", "entered-in-error"}
    assert isinstance(record["person_id"], str)
    assert record["source_problem"] is None or isinstance(record["source_problem"], str)


CATALOG = Catalog(
    {
        "C1": Product("C1", "Comirnaty JN.1", "covid19", frozenset({"HH1"})),
        "P1": Product("P1", "Priorix", "child", frozenset({"PR1"})),
    }
)
text_or_none = st.one_of(st.none(), st.text(max_size=20), st.sampled_from(["C1", "P1", "HH1", "PR1", "2026-11-20"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.fixed_dictionaries(
            {
                "person_id": st.one_of(st.just("189001019802"), st.text(alphabet=string.digits, max_size=13)),
                "npl_id": text_or_none,
                "vaccine_name": text_or_none,
                "batch": text_or_none,
                "dose_number": st.one_of(st.none(), st.integers(min_value=-5, max_value=200)),
                "vaccination_date": st.one_of(st.text(max_size=12), st.dates().map(date.isoformat)),
                "caregiver_hsa_id": text_or_none,
                "care_unit_hsa_id": text_or_none,
                "record_status": st.sampled_from(["completed", "entered-in-error"]),
            }
        ),
        min_size=1,
        max_size=25,
    )
)
def test_rule_columns_are_derived_for_any_rows(rows):
    frame = pd.DataFrame(
        [
            {**r, "id": i, "source": "urn:t", "source_record_id": f"R{i}", "person_key": r["person_id"]}
            for i, r in enumerate(rows)
        ]
    )
    derived = derive_columns(frame, CATALOG, date(2026, 11, 21), [])
    assert len(derived) == len(rows)
    for column in (
        "person_ok",
        "date_ok",
        "units_ok",
        "date_plausible",
        "batch_matches",
        "dose_present",
        "dose_interval_ok",
    ):
        assert set(derived[column]) <= {True, False}


json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=30)),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
statuses = st.one_of(
    st.sampled_from(["200 OK", "201 Created", "422 Unprocessable Entity", "404", "503", "", "2x"]), st.text(max_size=12)
)


@settings(max_examples=400, deadline=None)
@given(
    entry=st.one_of(
        json_value,
        st.fixed_dictionaries(
            {
                "response": st.one_of(
                    json_value,
                    st.fixed_dictionaries(
                        {
                            "status": statuses,
                            "location": st.one_of(
                                st.none(), st.text(max_size=30), st.just("Immunization/x/_history/1")
                            ),
                            "outcome": json_value,
                        }
                    ),
                )
            }
        ),
    )
)
def test_any_register_answer_is_read_without_raising_and_accepts_only_a_clear_yes(entry):
    out = interpret(entry)
    assert out["state"] in {"accepted", "duplicate", "rejected_register", "failed"}
    if out["state"] in {"accepted", "duplicate"}:
        status = str(entry["response"]["status"]).split()[0]
        assert status in {"200", "201"}
        assert str(entry["response"]["location"]).startswith("Immunization/")
