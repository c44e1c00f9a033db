"""Only Skatteverket's test personnummer (and the shared external test vectors) appear in the code."""

import json
import re
from pathlib import Path

import pytest

from vaxreport.synthetic.generate import _persons, samordningsnummer_for

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
SHAPED = re.compile(r"(?<!\d)(?:18|19|20)\d{10}(?!\d)")


def _allowed() -> set[str]:
    listed = set(_persons())
    vectors = json.loads((ROOT / "tests" / "data" / "personnummer-testvectors.json").read_text())
    allowed = listed | {v["long_format"] for v in vectors}
    derived = {samordningsnummer_for(p) for p in listed}
    # a test may spoil a listed number's check digit, or read its 10-digit form in another century
    spoiled = {p[:-1] + str(d) for p in listed | derived for d in range(10)}
    centuries = {c + p[2:] for p in listed for c in ("18", "19", "20")}
    return allowed | derived | spoiled | centuries


def _impossible_date(number: str) -> bool:
    """Malformed on purpose (month 13, 30 February): no person can have it."""
    from datetime import date

    day = int(number[6:8])
    try:
        date(int(number[:4]), int(number[4:6]), day - 60 if day > 60 else day)
    except ValueError:
        return True
    return False


def test_every_person_id_shaped_number_in_code_and_tests_is_a_test_number():
    allowed = _allowed()
    strangers = {}
    for folder in ("include", "tests", "dags", "plugins"):
        for path in (ROOT / folder).rglob("*.py"):
            for number in SHAPED.findall(path.read_text(encoding="utf-8")):
                if number in allowed or number.startswith("2099") or _impossible_date(number):
                    continue  # listed, derived, a synthetic NPL-id (2099…), or an impossible date
                strangers.setdefault(str(path.relative_to(ROOT)), set()).add(number)
    assert strangers == {}
