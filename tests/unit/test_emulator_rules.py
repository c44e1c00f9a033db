"""The NVR emulator's pure rules: person ids, dates, HSA-ids, catalog look-ups, rule order."""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from stdnum.se import personnummer as stdnum_personnummer

from nvr_emulator.__main__ import parse_args
from nvr_emulator.catalog import load_catalog, medication_resource
from nvr_emulator.config import EmulatorConfig, is_loopback
from nvr_emulator.identity import IdKind, birth_date, luhn_valid, parse_person_id
from nvr_emulator.outcomes import PROBLEMS, Problem
from nvr_emulator.rules import (
    CheckedVaccination,
    EntryRequest,
    Vaccination,
    check_bundle,
    check_vaccination,
    date_plausible,
    dose_interval_ok,
    dose_number,
    parse_if_none_exist,
    parse_occurrence_date,
    read_entry_request,
    read_vaccination,
    valid_hsa_id,
)
from nvr_emulator.server import RemoteBindRefused, bind

pytestmark = pytest.mark.unit

PNR = "http://electronichealth.se/identifier/personnummer"
SNR = "http://electronichealth.se/identifier/samordningsnummer"
PNR_OID = "urn:oid:1.2.752.129.2.1.3.1"
SNR_OID = "urn:oid:1.2.752.129.2.1.3.3"

# Skatteverket's test personnummer (open data; they belong to no real person).
SKATTEVERKET = [
    "189001019802", "190001079805", "195401025886", "197601042398", "198501042389",
    "199001012385", "200002292399", "201401012396", "201801012392", "202401072398",
]  # fmt: skip
# Public test vectors of the personnummer/meta project (/work/shared/data/personnummer-testvectors.json):
# (number, valid, kind). Skatteverket publishes no test samordningsnummer.
TEST_VECTORS = [
    # Invalid in the personnummer project because serial 000 is never issued; the contract's rules
    # (12 digits, calendar date, Luhn) accept it, and so does python-stdnum.
    ("201509160006", True, IdKind.PERSONNUMMER),
    ("190905271474", True, IdKind.PERSONNUMMER),
    ("200002292399", True, IdKind.PERSONNUMMER),
    ("197004289895", False, IdKind.PERSONNUMMER),
    ("195704289999", True, IdKind.PERSONNUMMER),
    ("194205669899", False, IdKind.SAMORDNINGSNUMMER),
    ("197302889931", True, IdKind.SAMORDNINGSNUMMER),
    ("196004309886", False, IdKind.PERSONNUMMER),
    ("194608239986", True, IdKind.PERSONNUMMER),
    ("197210869924", False, IdKind.SAMORDNINGSNUMMER),
]
TODAY = dt.date(2025, 6, 15)
CATALOG = load_catalog()


def other_check_digit(number: str) -> str:
    return number[:-1] + str((int(number[-1]) + 1) % 10)


# -- person ids -------------------------------------------------------------------------------


def test_skatteverket_numbers_are_in_the_shared_list() -> None:
    """Guard against invented numbers creeping into this file."""
    listed = Path("/work/shared/data/skatteverket-testpersonnummer.txt")
    if not listed.exists():
        pytest.skip("the shared Skatteverket list is not available here")
    known = set(listed.read_text().split())
    assert set(SKATTEVERKET) <= known


@pytest.mark.parametrize("number", SKATTEVERKET)
def test_skatteverket_test_numbers_are_valid_personnummer(number: str) -> None:
    for system in (PNR, PNR_OID):
        person = parse_person_id(system, number)
        assert person is not None
        assert person.kind is IdKind.PERSONNUMMER
        assert person.birth_date == dt.date(int(number[:4]), int(number[4:6]), int(number[6:8]))


@pytest.mark.parametrize("number", SKATTEVERKET)
def test_a_changed_check_digit_is_refused_and_stdnum_agrees(number: str) -> None:
    assert stdnum_personnummer.is_valid(number)
    assert parse_person_id(PNR, other_check_digit(number)) is None
    assert not stdnum_personnummer.is_valid(other_check_digit(number))


@pytest.mark.parametrize(("number", "valid", "kind"), TEST_VECTORS)
def test_public_test_vectors(number: str, valid: bool, kind: IdKind) -> None:
    system = PNR if kind is IdKind.PERSONNUMMER else SNR
    person = parse_person_id(system, number)
    assert (person is not None) is valid
    if person is not None:
        assert person.kind is kind


def test_samordningsnummer_has_day_plus_60() -> None:
    person = parse_person_id(SNR_OID, "197302889931")
    assert person is not None
    assert person.birth_date == dt.date(1973, 2, 28)
    assert birth_date("197302889931") == dt.date(1973, 2, 28)


@pytest.mark.parametrize(
    ("system", "value"),
    [
        pytest.param(SNR, "199001012385", id="personnummer-as-samordningsnummer"),
        pytest.param(PNR, "197302889931", id="samordningsnummer-as-personnummer"),
        pytest.param("urn:oid:1.2.752.129.2.1.3.2", "199001012385", id="reservnummer-system"),
        pytest.param(None, "199001012385", id="no-system"),
        pytest.param(PNR, "9001012385", id="ten-digits"),
        pytest.param(PNR, "19900101-2385", id="separator"),
        pytest.param(PNR, 199001012385, id="number-not-string"),
        pytest.param(PNR, "１９９００１０１２３８５", id="non-ascii-digits"),
        pytest.param(PNR, "199002302386", id="february-30"),
        pytest.param(PNR, "199013012386", id="month-13"),
    ],
)
def test_malformed_person_ids(system: str | None, value: Any) -> None:
    assert parse_person_id(system, value) is None


def test_luhn() -> None:
    assert luhn_valid("9001012385")
    assert not luhn_valid("9001012386")


def test_birth_date_of_nonsense_is_none() -> None:
    assert birth_date("199000002385") is None
    assert birth_date("abc") is None


# -- dates, units, doses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-02-29", dt.date(2024, 2, 29)),
        ("2023-02-29", None),
        ("2024-2-29", None),
        ("2024-02-29T10:00:00", None),
        ("20240229", None),
        (" 2024-02-29", None),
        (20240229, None),
        (None, None),
    ],
)
def test_parse_occurrence_date(value: Any, expected: dt.date | None) -> None:
    assert parse_occurrence_date(value) == expected


def test_date_plausible() -> None:
    born, start = dt.date(2018, 1, 1), dt.date(2013, 1, 1)
    assert date_plausible(TODAY, born, start, TODAY)
    assert date_plausible(born, born, start, TODAY)
    assert not date_plausible(TODAY + dt.timedelta(days=1), born, start, TODAY)
    assert not date_plausible(born - dt.timedelta(days=1), born, start, TODAY)
    assert not date_plausible(dt.date(2012, 12, 31), dt.date(1990, 1, 1), start, TODAY)


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("SE2321000016-ABCD", True),
        ("SE2321000131-P000000123457", True),
        ("SE2321000016-" + "A" * 18, True),  # 31 characters
        ("SE2321000016-" + "A" * 19, False),  # 32
        ("SE232100001-ABCD", False),
        ("se2321000016-ABCD", False),
        ("SE2321000016ABCD", False),
        ("SE2321000016-ÅÄÖ", False),
        ("SE2321000016-AB@C", False),
        ("SE2321000016-", False),
        (None, False),
    ],
)
def test_valid_hsa_id(value: str | None, valid: bool) -> None:
    assert valid_hsa_id(value) is valid


@pytest.mark.parametrize(("value", "expected"), [(1, 1), (99, 99), (0, None), (100, None), (True, None), ("2", None)])
def test_dose_number(value: Any, expected: int | None) -> None:
    assert dose_number(value) == expected


def test_dose_interval() -> None:
    day = dt.date(2021, 5, 22)
    assert dose_interval_ok(day, [], 21)
    assert dose_interval_ok(day, [dt.date(2021, 5, 1)], 21)
    assert not dose_interval_ok(day, [dt.date(2021, 5, 2)], 21)
    assert not dose_interval_ok(day, [dt.date(2021, 6, 1)], 21)  # the other direction
    assert dose_interval_ok(day, [day], 21)  # same date: duplicate control's business


# -- catalog ----------------------------------------------------------------------------------


def test_catalog_content() -> None:
    assert len(CATALOG.products) == 22
    assert len({p.npl_id for p in CATALOG.products}) == 22
    assert all(len(p.npl_id) == 14 and p.npl_id.startswith("2099") and p.synthetic for p in CATALOG.products)
    assert len(CATALOG.covid19_npl_ids) == 5
    starts = {p.programme.code: p.programme.start for p in CATALOG.products}
    assert starts == {
        "child": dt.date(2013, 1, 1),
        "bcg": dt.date(2013, 1, 1),
        "pneumococcal": dt.date(2022, 12, 1),
        "covid19": dt.date(2020, 12, 27),
    }


def test_catalog_lookups() -> None:
    infanrix = CATALOG.product("20990101000011")
    assert infanrix is not None
    assert infanrix.name == "Infanrix hexa"
    assert "A21CD301" in infanrix.lots
    assert "A71CB401" not in infanrix.lots
    assert not infanrix.is_covid19
    assert CATALOG.product("20990101009999") is None
    assert CATALOG.product(None) is None


def test_medication_resource() -> None:
    comirnaty = CATALOG.product("20990101000181")
    assert comirnaty is not None
    resource = medication_resource(comirnaty)
    assert resource["resourceType"] == "Medication"
    assert resource["id"] == comirnaty.npl_id
    assert resource["code"]["coding"] == [
        {"system": "urn:oid:1.2.752.129.2.1.5.1", "code": "20990101000181", "display": "Comirnaty JN.1"}
    ]
    assert resource["meta"]["tag"] == [{"system": "urn:vaxreport:synthetic", "code": "synthetic"}]
    assert {"url": "urn:vaxreport:programme", "valueCode": "covid19"} in resource["extension"]
    assert [e["valueString"] for e in resource["extension"] if e["url"] == "urn:vaxreport:batch"] == [
        "HH8191", "HH8192", "HH8193",
    ]  # fmt: skip
    assert resource["batch"]["lotNumber"] == "HH8191"


# -- requests and entries ---------------------------------------------------------------------

BASE: dict[str, Any] = {
    "resourceType": "Immunization",
    "contained": [
        {"resourceType": "Patient", "id": "patient",
         "identifier": [{"system": PNR, "value": "201801012392"}]},
        {"resourceType": "Organization", "id": "caregiver",
         "identifier": [{"system": "urn:oid:1.2.752.29.4.19", "value": "SE2321000016-15CQ"}]},
        {"resourceType": "Location", "id": "careunit",
         "identifier": [{"system": "urn:oid:1.2.752.129.2.1.4.1", "value": "SE2321000016-F3KL"}]},
    ],
    "identifier": [{"system": "urn:vaxreport:test-journal", "value": "rec-1"}],
    "status": "completed",
    "vaccineCode": {"coding": [{"system": "urn:oid:1.2.752.129.2.1.5.1", "code": "20990101000011"}]},
    "patient": {"reference": "#patient"},
    "occurrenceDateTime": "2019-03-01",
    "lotNumber": "A21CD301",
    "performer": [{"actor": {"reference": "#caregiver"}}],
    "location": {"reference": "#careunit"},
}  # fmt: skip


def resource(**changes: Any) -> dict[str, Any]:
    changed = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is None:
            changed.pop(key, None)
        else:
            changed[key] = value
    return changed


def checked(res: dict[str, Any]) -> CheckedVaccination | Problem:
    vaccination = read_vaccination(res)
    assert isinstance(vaccination, Vaccination)
    return check_vaccination(vaccination, CATALOG, TODAY)


def code_of(result: object) -> str | None:
    return result.nvr_code if isinstance(result, Problem) else None


def test_a_good_entry_passes_all_rules() -> None:
    result = checked(resource())
    assert isinstance(result, CheckedVaccination)
    assert result.person.value == "201801012392"
    assert result.product.npl_id == "20990101000011"
    assert (result.caregiver, result.careunit) == ("SE2321000016-15CQ", "SE2321000016-F3KL")
    assert result.dose is None


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        # Several faults at once: the earliest rule in the contract's order answers.
        ({"occurrenceDateTime": "2019-02-30", "lotNumber": None}, "DATE-FORMAT"),
        ({"occurrenceDateTime": "2030-01-01", "lotNumber": None}, "DATE-IMPLAUSIBLE"),
        ({"location": {"reference": "#nowhere"}, "vaccineCode": {"text": "TBE"}}, "UNIT-FORMAT"),
        ({"vaccineCode": {"text": "Ticovac"}, "occurrenceDateTime": "2030-01-01"}, "VACCINE-UNKNOWN"),
        ({"lotNumber": " "}, "BATCH-MISSING"),
        ({"lotNumber": "HH8191"}, "BATCH-MISMATCH"),
        ({"vaccineCode": {"coding": [{"system": "urn:oid:1.2.752.129.2.1.5.1", "code": "20990101000181"}]},
          "lotNumber": "HH8191", "occurrenceDateTime": "2021-05-01"}, "DOSE-MISSING"),
        ({"vaccineCode": {"coding": [{"system": "urn:other", "code": "20990101000011"}]}}, "VACCINE-UNKNOWN"),
    ],
)  # fmt: skip
def test_rule_order(changes: dict[str, Any], expected: str) -> None:
    assert code_of(checked(resource(**changes))) == expected


def test_person_id_is_checked_before_everything_else() -> None:
    res = resource(occurrenceDateTime="bad", lotNumber=None)
    res["contained"][0]["identifier"][0]["value"] = "201801012393"
    assert code_of(checked(res)) == "PERSONID-FORMAT"


@pytest.mark.parametrize(
    "res",
    [
        pytest.param(None, id="absent"),
        pytest.param({"resourceType": "Patient"}, id="patient"),
        pytest.param(resource(identifier=None), id="no-identifier"),
        pytest.param(resource(identifier=[{"system": "urn:x"}]), id="identifier-without-value"),
        pytest.param(resource(status="not-done"), id="status"),
        pytest.param(resource(patient={"reference": "Patient/123"}), id="patient-not-contained"),
        pytest.param(resource(patient=None), id="no-patient"),
        pytest.param(resource(lotNumber=42), id="lot-not-a-string"),
    ],
)
def test_structure(res: Any) -> None:
    assert code_of(read_vaccination(res)) == "STRUCTURE"


def test_entered_in_error_is_a_valid_status() -> None:
    assert isinstance(checked(resource(status="entered-in-error")), CheckedVaccination)


def test_entry_requests() -> None:
    condition = "identifier=urn:vaxreport:test-journal|rec-1"
    assert read_entry_request({"request": {"method": "POST", "url": "Immunization", "ifNoneExist": condition}}) == (
        EntryRequest("POST", if_none_exist=("urn:vaxreport:test-journal", "rec-1"))
    )
    assert read_entry_request({"request": {"method": "POST", "url": "Immunization"}}) == EntryRequest("POST")
    assert read_entry_request({"request": {"method": "PUT", "url": "Immunization/abc-1"}}) == EntryRequest(
        "PUT", target_id="abc-1"
    )
    for bad in ({"method": "GET", "url": "Immunization"}, {"method": "PUT", "url": "Immunization/"},
                {"method": "POST", "url": "Patient"}, {"method": "POST"}, None):  # fmt: skip
        assert code_of(read_entry_request({"request": bad})) == "STRUCTURE"


def test_parse_if_none_exist() -> None:
    assert parse_if_none_exist("identifier=urn%3Aoid%3A1.2%7Cabc") == ("urn:oid:1.2", "abc")
    assert parse_if_none_exist("identifier=urn:x|a|b") == ("urn:x", "a|b")
    for bad in (
        "identifier=abc",
        "identifier=|abc",
        "identifier=urn:x|",
        "id=urn:x|a",
        None,
        "x=1&identifier=a|b",
    ):
        assert parse_if_none_exist(bad) is None


def test_check_bundle() -> None:
    entry = {"request": {"method": "POST", "url": "Immunization"}}
    batch = {"resourceType": "Bundle", "type": "batch"}
    assert check_bundle(batch | {"entry": [entry]}) == [entry]
    assert check_bundle(batch | {"entry": [entry] * 100}) == [entry] * 100
    assert code_of(check_bundle(batch | {"entry": [entry] * 101})) == "BUNDLE-TOO-LARGE"
    assert code_of(check_bundle(batch | {"entry": []})) == "BUNDLE-STRUCTURE"
    assert code_of(check_bundle(batch | {"type": "transaction", "entry": [entry]})) == "BUNDLE-STRUCTURE"
    assert code_of(check_bundle("Bundle")) == "BUNDLE-STRUCTURE"
    delete = {"request": {"method": "DELETE", "url": "Immunization/1"}}
    assert code_of(check_bundle(batch | {"entry": [entry, delete]})) == "BUNDLE-DELETE"


def test_every_answer_has_swedish_text_and_a_valid_issue() -> None:
    severities = {"error", "warning", "information"}
    issue_types = {
        "value",
        "business-rule",
        "code-invalid",
        "required",
        "structure",
        "not-found",
        "duplicate",
    }
    for code, found in PROBLEMS.items():
        assert found.nvr_code == code
        assert found.severity in severities
        assert found.code in issue_types
        assert found.diagnostics
        assert found.outcome()["issue"][0]["details"]["coding"][0] == {
            "system": "urn:vaxreport:nvr-error",
            "code": code,
        }


# -- start-up -----------------------------------------------------------------------------------


def test_cli_defaults_and_options() -> None:
    assert parse_args([]) == EmulatorConfig()
    config = parse_args(["--port", "0", "--rate-limit", "0", "--today", "2025-06-15", "--token-ttl", "5"])
    assert (config.port, config.rate_limit, config.today, config.token_ttl) == (0, 0, dt.date(2025, 6, 15), 5)
    assert config.current_date() == dt.date(2025, 6, 15)


def test_non_loopback_bind_is_refused_without_allow_remote() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0")  # noqa: S104 - the address under test
    assert not is_loopback("example.org")
    with pytest.raises(RemoteBindRefused):
        bind(EmulatorConfig(host="0.0.0.0", port=0))  # noqa: S104
