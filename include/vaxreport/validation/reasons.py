"""Machine codes of the register's rules, with the human text a care unit acts on.

The codes are the register's `urn:vaxreport:nvr-error` codes, so a local rejection and a register
rejection of the same fault carry the same code.
"""

from __future__ import annotations

from typing import NamedTuple


class Reason(NamedTuple):
    sv: str
    en: str
    fix_sv: str
    fix_en: str


REASONS: dict[str, Reason] = {
    "PERSONID-FORMAT": Reason(
        "Personnumret har fel format eller kontrollsiffra",
        "The person id is malformed or its check digit is wrong",
        "Kontrollera personnummer/samordningsnummer mot journalen och rätta det.",
        "Check the personnummer/samordningsnummer against the patient record and correct it.",
    ),
    "DATE-FORMAT": Reason(
        "Vaccinationsdatumet har fel format",
        "The vaccination date is malformed",
        "Ange vaccinationsdatum som ÅÅÅÅ-MM-DD (ett datum som finns).",
        "Enter the vaccination date as YYYY-MM-DD (a date that exists).",
    ),
    "DATE-IMPLAUSIBLE": Reason(
        "Vaccinationsdatumet är orimligt (i framtiden, före födseln eller före programmets start)",
        "The vaccination date is implausible (in the future, before birth or before the programme began)",
        "Kontrollera årtal och datum för vaccinationen.",
        "Check the year and date of the vaccination.",
    ),
    "VACCINE-UNKNOWN": Reason(
        "Vaccinet finns inte i registrets vaccinlista",
        "The vaccine is not in the register's vaccine list",
        "Välj vaccinet från produktlistan (NPL-id) i stället för fritext.",
        "Pick the vaccine from the product list (NPL-id) instead of free text.",
    ),
    "BATCH-MISSING": Reason(
        "Satsnummer saknas",
        "The batch number is missing",
        "Fyll i satsnumret från förpackningen.",
        "Enter the batch number from the package.",
    ),
    "BATCH-MISMATCH": Reason(
        "Satsnumret hör till ett annat vaccin",
        "The batch number belongs to another vaccine",
        "Kontrollera att satsnummer och vaccin hör ihop.",
        "Check that the batch number and the vaccine belong together.",
    ),
    "DOSE-MISSING": Reason(
        "Dosnummer saknas för covid-19-vaccination",
        "The dose number is missing for a COVID-19 vaccination",
        "Ange dosnummer (1–99).",
        "Enter the dose number (1–99).",
    ),
    "DOSE-INTERVAL": Reason(
        "För kort intervall sedan föregående covid-19-dos",
        "Too short an interval since the previous COVID-19 dose",
        "Kontrollera datum för denna och föregående dos; dubbelregistrering?",
        "Check the dates of this and the previous dose; a double registration?",
    ),
    "UNIT-FORMAT": Reason(
        "Vårdgivarens eller vårdenhetens HSA-id saknas eller har fel format",
        "The caregiver's or care unit's HSA-id is missing or malformed",
        "Kontrollera vårdenhetens HSA-id i journalsystemets inställningar.",
        "Check the care unit's HSA-id in the journal system's settings.",
    ),
    "STRUCTURE": Reason(
        "Posten är inte en giltig Immunization",
        "The entry is not a valid Immunization",
        "Kontakta systemförvaltningen.",
        "Contact the system administrators.",
    ),
    "UNKNOWN-ID": Reason(
        "Okänt id i registret",
        "Unknown id in the register",
        "Kontakta systemförvaltningen.",
        "Contact the system administrators.",
    ),
    "SOURCE-FORMAT": Reason(
        "Journalposten kunde inte läsas",
        "The journal record could not be read",
        "Kontrollera posten i journalsystemet (fältet anges i felbeskrivningen).",
        "Check the record in the journal system (the field is named in the description).",
    ),
    "PERSON-NOT-FOUND": Reason(
        "Personen finns inte i folkbokföringen",
        "The person is not in the population register",
        "Kontrollera personnummer/samordningsnummer; rätta och registrera om.",
        "Check the personnummer/samordningsnummer; correct it and register again.",
    ),
    "VOIDED": Reason(
        "Makulerad i journalen innan den rapporterades",
        "Voided in the journal before it was reported",
        "Ingen åtgärd.",
        "No action.",
    ),
    "OUT-OF-SCOPE": Reason(
        "Vaccinet rapporteras inte till registret (utanför programmen)",
        "The vaccine is not reported to the register (outside the programmes)",
        "Ingen åtgärd.",
        "No action.",
    ),
}

# The register applies its rules in this order; the first failing rule is the one reported.
RULE_ORDER = (
    "PERSONID-FORMAT",
    "DATE-FORMAT",
    "UNIT-FORMAT",
    "VACCINE-UNKNOWN",
    "DATE-IMPLAUSIBLE",
    "BATCH-MISSING",
    "BATCH-MISMATCH",
    "DOSE-MISSING",
    "DOSE-INTERVAL",
)


def reason(code: str | None) -> Reason | None:
    return REASONS.get(code or "")
