"""Register entries for the emulator's own tests, built the way REGISTRY.md shapes them."""

from __future__ import annotations

import datetime as dt
from typing import Any

PNR = "http://electronichealth.se/identifier/personnummer"
SNR = "http://electronichealth.se/identifier/samordningsnummer"
NPL = "urn:oid:1.2.752.129.2.1.5.1"
HSA = "urn:oid:1.2.752.29.4.19"
INFANRIX, INFANRIX_LOT = "20990101000011", "A21CD301"
CAREGIVER, CAREUNIT = "SE2321000016-15CQ", "SE2321000016-F3KL"


def immunization(journal: str, ident: str, person: str, day: dt.date, lot: str = INFANRIX_LOT) -> dict[str, Any]:
    """A valid child-programme vaccination (Infanrix hexa) for `person` on `day`."""
    system = SNR if int(person[6:8]) > 60 else PNR
    return {
        "resourceType": "Immunization",
        "contained": [
            {"resourceType": "Patient", "id": "patient", "identifier": [{"system": system, "value": person}]},
            {"resourceType": "Organization", "id": "caregiver", "identifier": [{"system": HSA, "value": CAREGIVER}]},
            {
                "resourceType": "Location",
                "id": "careunit",
                "identifier": [{"system": HSA, "value": CAREUNIT}],
                "managingOrganization": {"reference": "#caregiver"},
            },
        ],
        "identifier": [{"system": journal, "value": ident}],
        "status": "completed",
        "vaccineCode": {"coding": [{"system": NPL, "code": INFANRIX, "display": "Infanrix hexa"}]},
        "patient": {"reference": "#patient"},
        "occurrenceDateTime": day.isoformat(),
        "primarySource": True,
        "lotNumber": lot,
        "performer": [{"actor": {"reference": "#caregiver"}}],
        "location": {"reference": "#careunit"},
    }


def ledger_rows(records: list, source: str = "urn:test") -> list[dict[str, Any]]:
    """Generated journal records (`synthetic.generate.Record`) as the ledger rows the pipeline's
    bundle builder takes, sent unvalidated."""
    return [
        {
            **r.source_row(),
            "source": source,
            "source_record_id": r.record_id,
            "person_id": r.patient_id,
            "record_status": "completed",
        }
        for r in records
    ]
