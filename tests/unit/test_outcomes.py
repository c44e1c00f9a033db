import pytest

from vaxreport.registry.outcomes import interpret

pytestmark = pytest.mark.unit


def _outcome(code, severity="error", issue="value"):
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": severity,
                "code": issue,
                "diagnostics": "text",
                "details": {"coding": [{"system": "urn:vaxreport:nvr-error", "code": code}]},
            }
        ],
    }


def test_created_is_accepted_with_register_id():
    out = interpret({"response": {"status": "201 Created", "location": "Immunization/abc/_history/1"}})
    assert out["state"] == "accepted"
    assert out["register_id"] == "abc"


def test_own_identifier_again_is_accepted_but_a_double_registration_is_duplicate():
    own = interpret(
        {
            "response": {
                "status": "200 OK",
                "location": "Immunization/abc",
                "outcome": _outcome("DUPLICATE-IDENTIFIER", "information", "duplicate"),
            }
        }
    )
    dup = interpret(
        {
            "response": {
                "status": "200 OK",
                "location": "Immunization/abc",
                "outcome": _outcome("DUPLICATE", "information", "duplicate"),
            }
        }
    )
    assert own["state"] == "accepted"
    assert dup["state"] == "duplicate"


def test_rejection_keeps_the_registers_code_and_adds_english():
    out = interpret({"response": {"status": "422 Unprocessable Entity", "outcome": _outcome("BATCH-MISMATCH")}})
    assert out["state"] == "rejected_register"
    assert out["code"] == "BATCH-MISMATCH"
    assert out["reason_sv"] == "Satsnumret hör till ett annat vaccin"
    assert "batch" in out["reason_en"]


@pytest.mark.parametrize(
    "entry",
    [
        {},
        {"response": None},
        {"response": {"status": "banana"}},
        {"response": {"status": "201 Created"}},
        {"response": {"status": "500 Internal Server Error"}},
        {"response": {"status": "422"}},
        "not a dict",
    ],
)
def test_anything_unreadable_is_failed_never_accepted(entry):
    assert interpret(entry)["state"] == "failed"


def test_register_free_text_is_scrubbed_of_person_ids():
    outcome = _outcome("SOMETHING-NEW")
    outcome["issue"][0]["diagnostics"] = "Personen 18900101-9802 / 189001019802 / 900101+9802 saknas"
    out = interpret({"response": {"status": "422 Unprocessable Entity", "outcome": outcome}})
    assert out["state"] == "rejected_register"
    assert out["reason_sv"] == "Personen [person-id] / [person-id] / [person-id] saknas"
