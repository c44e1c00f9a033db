"""Person-id checks against external test vectors and Skatteverket's test list."""

import json
from datetime import date
from pathlib import Path

import pytest

from vaxreport.synthetic.generate import samordningsnummer_for
from vaxreport.validation.suite import person_birth_date

pytestmark = pytest.mark.unit
VECTORS = Path(__file__).resolve().parents[1] / "data" / "personnummer-testvectors.json"


def _vectors():
    return [v for v in json.loads(VECTORS.read_text()) if v["type"] in {"ssn", "con"}]


@pytest.mark.parametrize("vector", _vectors(), ids=lambda v: f"{v['type']}-{'valid' if v['valid'] else 'invalid'}")
def test_external_vectors_in_12_digit_form(vector):
    assert (person_birth_date(vector["long_format"]) is not None) == vector["valid"]


def test_every_skatteverket_test_number_is_valid():
    from vaxreport.synthetic.generate import _persons

    persons = _persons()
    assert len(persons) > 40000
    assert all(person_birth_date(p) is not None for p in persons)


def test_synthesised_samordningsnummer_are_valid_with_day_plus_60():
    pnr = "189001019802"
    sam = samordningsnummer_for(pnr)
    assert sam[6:8] == "61"
    assert person_birth_date(sam) == date(1890, 1, 1)


@pytest.mark.parametrize(
    "value", ["", "18900101980", "1890010198021", "18900101980X", "189001019803", "189013019802", "189001329802"]
)
def test_malformed_or_wrong_check_digit(value):
    assert person_birth_date(value) is None
