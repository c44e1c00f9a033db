"""Build the register's batch Bundles from ledger rows.

Plain dicts, not model objects: a bundle is built once and serialised once. Ids are uuid5 of the
record's identity, so the same record always produces the same entry and the same bundle id, and a
re-sent bundle is recognisably the same request.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

MAX_ENTRIES = 100
NAMESPACE = uuid.UUID("6f1c2a4e-3b7d-5e8f-9a0b-1c2d3e4f5a6b")
PERSONNUMMER = "http://electronichealth.se/identifier/personnummer"
SAMORDNINGSNUMMER = "http://electronichealth.se/identifier/samordningsnummer"
HSA_SYSTEM = "urn:oid:1.2.752.29.4.19"
NPL_SYSTEM = "urn:oid:1.2.752.129.2.1.5.1"


def entry_uuid(source: str, record_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{source}|{record_id}"))


def person_system(person_id: str) -> str:
    """Samordningsnummer carry the day of birth + 60."""
    if len(person_id) == 12 and person_id[6:8].isdigit() and int(person_id[6:8]) > 60:
        return SAMORDNINGSNUMMER
    return PERSONNUMMER


def immunization_entry(row: dict) -> dict:
    """One ledger row as an entry: a conditional create (`ifNoneExist` on the record's identifier),
    or, for a record the register already holds (`register_id` set), an update of it."""
    source, record_id = row["source"], row["source_record_id"]
    coding = {"system": NPL_SYSTEM, "display": row.get("vaccine_name") or ""}
    if row.get("npl_id"):
        coding["code"] = row["npl_id"]
    vaccine_code = {"coding": [coding]} if row.get("npl_id") else {"text": row.get("vaccine_name") or ""}
    medication: dict = {"resourceType": "Medication", "id": "vaccine", "code": vaccine_code}
    immunization: dict = {
        "resourceType": "Immunization",
        "contained": [
            {
                "resourceType": "Patient",
                "id": "patient",
                "identifier": [{"system": person_system(row["person_id"]), "value": row["person_id"]}],
            },
            {
                "resourceType": "Organization",
                "id": "caregiver",
                "identifier": [{"system": HSA_SYSTEM, "value": row.get("caregiver_hsa_id") or ""}],
                "name": row.get("caregiver_name") or "",
            },
            {
                "resourceType": "Location",
                "id": "careunit",
                "identifier": [{"system": HSA_SYSTEM, "value": row.get("care_unit_hsa_id") or ""}],
                "name": row.get("care_unit_name") or "",
                "managingOrganization": {"reference": "#caregiver"},
            },
            medication,
        ],
        "identifier": [{"system": source, "value": record_id}],
        "status": row.get("record_status") or "completed",
        "vaccineCode": vaccine_code,
        "patient": {"reference": "#patient"},
        "occurrenceDateTime": row.get("vaccination_date") or "",
        "primarySource": True,
        "performer": [{"actor": {"reference": "#caregiver"}}],
        "location": {"reference": "#careunit"},
    }
    if row.get("registered_at"):
        immunization["recorded"] = str(row["registered_at"]).replace(" ", "T") + "Z"
    if row.get("batch"):
        immunization["lotNumber"] = row["batch"]
        medication["batch"] = {"lotNumber": row["batch"]}
    if row.get("dose_number") is not None:
        immunization["protocolApplied"] = [{"doseNumberPositiveInt": int(row["dose_number"])}]
    if row.get("register_id"):
        immunization["id"] = row["register_id"]
        request = {"method": "PUT", "url": f"Immunization/{row['register_id']}"}
    else:
        request = {"method": "POST", "url": "Immunization", "ifNoneExist": f"identifier={source}|{record_id}"}
    return {"fullUrl": f"urn:uuid:{entry_uuid(source, record_id)}", "resource": immunization, "request": request}


def batch_bundle(entries: list[dict]) -> dict:
    if not 1 <= len(entries) <= MAX_ENTRIES:
        raise ValueError(f"a batch carries 1..{MAX_ENTRIES} entries, not {len(entries)}")
    bundle_id = uuid.uuid5(NAMESPACE, "|".join(e["fullUrl"] for e in entries))
    return {"resourceType": "Bundle", "id": str(bundle_id), "type": "batch", "entry": entries}


def send_order(rows: Iterable[dict]) -> list[dict]:
    """The order records are sent in: by vaccination date, then record id. An earlier dose then
    reaches the register before a later one, and an original before its double registration."""
    return sorted(rows, key=lambda r: (str(r.get("vaccination_date") or ""), r["source"], r["source_record_id"]))


def chunked(rows: list[dict], size: int = MAX_ENTRIES) -> Iterator[list[dict]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]
