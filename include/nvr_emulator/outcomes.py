"""What the register says: the nvr-error codes, their FHIR issue types and Swedish texts.

One table (:data:`PROBLEMS`) so the codes, HTTP statuses and texts of REGISTRY.md's answer
table live in one place, and OperationOutcome builders shared by entries and whole requests.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

NVR_ERROR_SYSTEM = "urn:vaxreport:nvr-error"

#: ``Bundle.entry.response.status`` strings, HTTP code plus reason phrase as FHIR shows them.
STATUS_LINES = {
    200: "200 OK",
    201: "201 Created",
    400: "400 Bad Request",
    404: "404 Not Found",
    422: "422 Unprocessable Entity",
    503: "503 Service Unavailable",
}


@dataclass(frozen=True)
class Problem:
    """One finding of the register: status, FHIR issue, nvr-error code, Swedish text.

    Attributes:
        status: HTTP status of the entry (or request).
        severity: ``error``, ``warning`` or ``information``.
        code: FHIR issue type (``value``, ``business-rule``, ``duplicate`` ...).
        nvr_code: code in the ``urn:vaxreport:nvr-error`` system, or None.
        diagnostics: Swedish text shown to care units.
        expression: FHIRPath expressions of the offending elements.
    """

    status: int
    severity: str
    code: str
    nvr_code: str | None
    diagnostics: str
    expression: tuple[str, ...] = ()

    def at(self, *expression: str) -> Problem:
        """The same problem pointing at other elements."""
        return replace(self, expression=expression)

    def outcome(self) -> dict[str, Any]:
        """This problem as a FHIR OperationOutcome."""
        return operation_outcome(
            self.severity, self.code, self.diagnostics, nvr_code=self.nvr_code, expression=self.expression
        )


def operation_outcome(
    severity: str,
    code: str,
    diagnostics: str,
    *,
    nvr_code: str | None = None,
    expression: tuple[str, ...] | list[str] = (),
) -> dict[str, Any]:
    """A one-issue OperationOutcome; ``details`` only when there is an nvr-error code."""
    issue: dict[str, Any] = {"severity": severity, "code": code}
    if nvr_code is not None:
        issue["details"] = {"coding": [{"system": NVR_ERROR_SYSTEM, "code": nvr_code}]}
    issue["diagnostics"] = diagnostics
    if expression:
        issue["expression"] = list(expression)
    return {"resourceType": "OperationOutcome", "issue": [issue]}


# fmt: off
_TABLE = (
    # status, severity, issue type, nvr-error code, Swedish text, expression
    (400, "error", "structure", "STRUCTURE", "Posten är inte en giltig Immunization", "Immunization"),
    (200, "information", "duplicate", "DUPLICATE-IDENTIFIER", "Vaccinationen finns redan",
     "Immunization.identifier"),
    (200, "information", "duplicate", "DUPLICATE", "Vaccinationen finns redan", "Immunization"),
    (200, "warning", "business-rule", "UPDATED-EXISTING",
     "Vaccinationen fanns redan med annat innehåll och har uppdaterats", "Immunization"),
    (404, "error", "not-found", "UNKNOWN-ID", "Okänt id", "Immunization.id"),
    (400, "error", "value", "PERSONID-FORMAT", "Personnumret har fel format eller kontrollsiffra",
     "Patient.identifier[0].value"),
    (400, "error", "value", "DATE-FORMAT", "Vaccinationsdatumet har fel format",
     "Immunization.occurrenceDateTime"),
    (400, "error", "value", "UNIT-FORMAT",
     "Vårdgivarens eller vårdenhetens HSA-id saknas eller har fel format", "Organization.identifier"),
    (422, "error", "code-invalid", "VACCINE-UNKNOWN", "Vaccinet finns inte i registrets vaccinlista",
     "Immunization.vaccineCode"),
    (422, "error", "business-rule", "DATE-IMPLAUSIBLE",
     "Vaccinationsdatumet är orimligt (i framtiden, före födseln eller före programmets start)",
     "Immunization.occurrenceDateTime"),
    (422, "error", "required", "BATCH-MISSING", "Satsnummer saknas", "Immunization.lotNumber"),
    (422, "error", "business-rule", "BATCH-MISMATCH", "Satsnumret hör till ett annat vaccin",
     "Immunization.lotNumber"),
    (422, "error", "required", "DOSE-MISSING", "Dosnummer saknas för covid-19-vaccination",
     "Immunization.protocolApplied[0].doseNumberPositiveInt"),
    (422, "error", "business-rule", "DOSE-INTERVAL", "För kort intervall sedan föregående covid-19-dos",
     "Immunization.occurrenceDateTime"),
)
# fmt: on

#: Per-entry answers of REGISTRY.md, by nvr-error code.
PROBLEMS: dict[str, Problem] = {
    code: Problem(status, severity, issue, code, text, (expression,))
    for status, severity, issue, code, text, expression in _TABLE
}


def problem(nvr_code: str) -> Problem:
    """The register's answer for ``nvr_code`` (KeyError for codes it does not have)."""
    return PROBLEMS[nvr_code]


# Whole-request answers: the request was not processed; the codes are the emulator's own.
# fmt: off
BUNDLE_STRUCTURE = Problem(400, "error", "structure", "BUNDLE-STRUCTURE",
                           "Begäran måste vara en Bundle av typen batch med 1–100 poster", ("Bundle",))
BUNDLE_TOO_LARGE = Problem(400, "error", "too-costly", "BUNDLE-TOO-LARGE",
                           "En begäran får innehålla högst 100 vaccinationer", ("Bundle.entry",))
BUNDLE_DELETE = Problem(400, "error", "not-supported", "BUNDLE-DELETE",
                        "DELETE är inte tillåtet i en Bundle; radera en vaccination i taget",
                        ("Bundle.entry.request.method",))
# fmt: on

#: Fault injection's per-entry answer: the entry was not processed (nothing stored); send it again.
TRANSIENT = Problem(
    503,
    "error",
    "transient",
    "TRANSIENT",
    "Tillfälligt fel; vaccinationen är inte registrerad, skicka den igen",
    ("Bundle.entry",),
)


#: Later findings (``GET /reports/errors``): nvr-error code → Swedish text. The register's own
#: population look-up makes ``PERSON-NOT-FOUND``; the others come from ``POST /admin/findings``.
PERSON_NOT_FOUND = "PERSON-NOT-FOUND"
FINDING_TEXTS = {
    PERSON_NOT_FOUND: "Personen finns inte i folkbokföringen",
    "DUPLICATE-LATER": "Dubblett upptäckt vid avstämning",
}
