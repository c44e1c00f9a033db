"""The register's checks of a batch and of each entry, as pure functions.

The order of :func:`check_vaccination` is the contract's: the first failing rule decides the
answer. Rules that need the register's contents (identifier look-up, dose interval,
duplicate control) live in :mod:`nvr_emulator.register`; their pure parts are here.

The values they return are NamedTuples rather than frozen dataclasses: just as immutable, but
several times cheaper to build, and every entry of every batch builds a handful of them.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qsl

from nvr_emulator.catalog import NPL_SYSTEM, Catalog, Product
from nvr_emulator.identity import SYSTEMS as PERSON_SYSTEMS
from nvr_emulator.identity import PersonId, parse_person_id
from nvr_emulator.outcomes import BUNDLE_DELETE, BUNDLE_STRUCTURE, BUNDLE_TOO_LARGE, Problem, problem

if TYPE_CHECKING:
    from collections.abc import Iterable

MAX_ENTRIES = 100
#: HSA-id systems: HL7 Sweden basprofiler's OID and the RIV-TA/Inera one; both are in use.
HSA_SYSTEMS = frozenset({"urn:oid:1.2.752.29.4.19", "urn:oid:1.2.752.129.2.1.4.1"})
_HSA_ID = re.compile(r"SE[0-9]{10}-[A-Za-z0-9]+")
HSA_MAX_LENGTH = 31
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_RESOURCE_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
STATUSES = frozenset({"completed", "entered-in-error"})
DOSE_RANGE = range(1, 100)

STRUCTURE = problem("STRUCTURE")


class EntryRequest(NamedTuple):
    """What an entry asks for: create (POST, maybe conditional) or update (PUT) of an id."""

    method: str
    target_id: str | None = None
    if_none_exist: tuple[str, str] | None = None


class Vaccination(NamedTuple):
    """An Immunization that passed the structure check (rule 0); fields still unchecked."""

    identifier_system: str
    identifier_value: str
    status: str
    person_system: str | None
    person_value: object
    occurrence: object
    npl_id: str | None
    lot: str | None
    dose: object
    caregiver: tuple[str, str] | None
    careunit: tuple[str, str] | None
    resource: dict[str, Any]


class CheckedVaccination(NamedTuple):
    """A vaccination that passed rules 2–9: everything the store and later rules need."""

    identifier_system: str
    identifier_value: str
    status: str
    person: PersonId
    date: dt.date
    product: Product
    lot: str
    dose: int | None
    caregiver: str
    careunit_system: str
    careunit: str
    resource: dict[str, Any]


def check_bundle(body: object) -> list[dict[str, Any]] | Problem:
    """Whole-request checks: a batch Bundle of 1–100 entries and no DELETE among them."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle" or body.get("type") != "batch":
        return BUNDLE_STRUCTURE
    entries = body.get("entry")
    if not isinstance(entries, list) or not entries:
        return BUNDLE_STRUCTURE
    if len(entries) > MAX_ENTRIES:
        return BUNDLE_TOO_LARGE
    for entry in entries:
        request = entry.get("request") if isinstance(entry, dict) else None
        if isinstance(request, dict) and str(request.get("method", "")).upper() == "DELETE":
            return BUNDLE_DELETE
    return entries


def read_entry_request(entry: object) -> EntryRequest | Problem:
    """Rule 0, request part: POST ``Immunization`` (``ifNoneExist`` optional) or PUT ``Immunization/{id}``."""
    request = entry.get("request") if isinstance(entry, dict) else None
    if not isinstance(request, dict) or not isinstance(request.get("url"), str):
        return STRUCTURE.at("Bundle.entry.request")
    method, url = request.get("method"), request["url"].lstrip("/")
    if method == "POST" and url == "Immunization":
        condition = request.get("ifNoneExist")
        if condition is None:
            return EntryRequest("POST")
        identifier = parse_if_none_exist(condition)
        if identifier is None:
            return STRUCTURE.at("Bundle.entry.request.ifNoneExist")
        return EntryRequest("POST", if_none_exist=identifier)
    if method == "PUT" and url.startswith("Immunization/"):
        target = url.removeprefix("Immunization/")
        if _RESOURCE_ID.fullmatch(target):
            return EntryRequest("PUT", target_id=target)
    return STRUCTURE.at("Bundle.entry.request")


def parse_if_none_exist(condition: object) -> tuple[str, str] | None:
    """``identifier=<system>|<value>`` (percent-encoding allowed) as (system, value), else None."""
    if not isinstance(condition, str):
        return None
    if "&" in condition or "%" in condition or "+" in condition:
        pairs = parse_qsl(condition, keep_blank_values=True)
    else:  # what parse_qsl makes of a string without separators or escapes, without its cost
        name, _, value = condition.partition("=")
        pairs = [(name, value)] if condition else []
    if len(pairs) != 1 or pairs[0][0] != "identifier":
        return None
    system, bar, value = pairs[0][1].partition("|")
    if not bar or not system or not value:
        return None
    return system, value


def _contained_index(resource: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """The contained resources by (resourceType, id), the first of each: read once per entry
    instead of once per reference."""
    contained = resource.get("contained")
    index: dict[tuple[str, str], dict[str, Any]] = {}
    if isinstance(contained, list):
        for item in contained:
            if isinstance(item, dict):
                kind, item_id = item.get("resourceType"), item.get("id")
                if isinstance(kind, str) and isinstance(item_id, str):
                    index.setdefault((kind, item_id), item)
    return index


def _contained(
    index: dict[tuple[str, str], dict[str, Any]], reference: object, default_id: str, kind: str
) -> dict[str, Any] | None:
    """The contained resource of type ``kind`` a ``#id`` reference points to.

    Without a reference the contract's fixed id (``#caregiver``, ``#careunit``) is used.
    """
    ref = reference.get("reference") if isinstance(reference, dict) else None
    if ref is None:
        ref = f"#{default_id}"
    if not isinstance(ref, str) or not ref.startswith("#"):
        return None
    return index.get((kind, ref[1:]))


def _hsa_identifier(resource: dict[str, Any] | None) -> tuple[str, str] | None:
    """The first HSA-id identifier of an Organization or Location as (system, value)."""
    identifiers = resource.get("identifier") if resource else None
    if isinstance(identifiers, list):
        for identifier in identifiers:
            if isinstance(identifier, dict):
                system, value = identifier.get("system"), identifier.get("value")
                if system in HSA_SYSTEMS and isinstance(value, str):
                    return system, value
    return None


def _person_identifier(patient: dict[str, Any]) -> dict[str, Any]:
    """The Patient's first identifier with a person-id system, else simply its first one."""
    identifiers = patient.get("identifier")
    if isinstance(identifiers, list):
        for identifier in identifiers:
            if isinstance(identifier, dict) and identifier.get("system") in PERSON_SYSTEMS:
                return identifier
    return _first(identifiers)


def _npl_id(vaccine_code: object) -> str | None:
    """The code of the first ``vaccineCode.coding`` in the NPL-id system."""
    codings = vaccine_code.get("coding") if isinstance(vaccine_code, dict) else None
    if isinstance(codings, list):
        for coding in codings:
            if isinstance(coding, dict) and coding.get("system") == NPL_SYSTEM:
                code = coding.get("code")
                if isinstance(code, str):
                    return code
    return None


def _first(value: object) -> dict[str, Any]:
    """``value[0]`` if ``value`` is a list starting with an object, else an empty dict."""
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return value[0]
    return {}


def read_vaccination(resource: object) -> Vaccination | Problem:
    """Rule 0 (STRUCTURE): an Immunization with an identifier, a status and a contained Patient."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Immunization":
        return STRUCTURE.at("Bundle.entry.resource")
    identifier = _first(resource.get("identifier"))
    system, value = identifier.get("system"), identifier.get("value")
    if not (isinstance(system, str) and system and isinstance(value, str) and value):
        return STRUCTURE.at("Immunization.identifier")
    status = resource.get("status")
    if status not in STATUSES:
        return STRUCTURE.at("Immunization.status")
    contained = _contained_index(resource)
    patient_reference = resource.get("patient")
    patient = _contained(contained, patient_reference, "patient", "Patient")
    if patient is None or not isinstance(patient_reference, dict):
        return STRUCTURE.at("Immunization.patient")
    lot = resource.get("lotNumber")
    if lot is not None and not isinstance(lot, str):
        return STRUCTURE.at("Immunization.lotNumber")
    person = _person_identifier(patient)
    caregiver = _contained(contained, _first(resource.get("performer")).get("actor"), "caregiver", "Organization")
    careunit = _contained(contained, resource.get("location"), "careunit", "Location")
    return Vaccination(
        system,
        value,
        status,
        person.get("system"),
        person.get("value"),
        resource.get("occurrenceDateTime"),
        _npl_id(resource.get("vaccineCode")),
        lot,
        _first(resource.get("protocolApplied")).get("doseNumberPositiveInt"),
        _hsa_identifier(caregiver),
        _hsa_identifier(careunit),
        resource,
    )


def parse_occurrence_date(value: object) -> dt.date | None:
    """Rule 3: a date only, ``YYYY-MM-DD``, that exists in the calendar; None otherwise."""
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def valid_hsa_id(value: str | None) -> bool:
    """Rule 4: ``SE`` + 10-digit organisationsnummer + ``-`` + letters/digits, at most 31 characters."""
    return value is not None and len(value) <= HSA_MAX_LENGTH and _HSA_ID.fullmatch(value) is not None


def date_plausible(occurred: dt.date, born: dt.date, programme_start: dt.date, today: dt.date) -> bool:
    """Rule 6: not after today (Swedish time), not before birth, not before the programme started."""
    return born <= occurred <= today and occurred >= programme_start


def dose_number(value: object) -> int | None:
    """``doseNumberPositiveInt`` when it is an integer 1–99 (JSON booleans are not numbers)."""
    if isinstance(value, int) and not isinstance(value, bool) and value in DOSE_RANGE:
        return value
    return None


def lot_missing(lot: str | None) -> bool:
    """Rule 7: absent, empty or only whitespace."""
    return lot is None or not lot.strip()


def check_vaccination(v: Vaccination, catalog: Catalog, today: dt.date) -> CheckedVaccination | Problem:
    """Rules 2–9 in the contract's order; the first failure is the answer."""
    person = parse_person_id(v.person_system, v.person_value)
    if person is None:  # 2
        return problem("PERSONID-FORMAT")
    occurred = parse_occurrence_date(v.occurrence)
    if occurred is None:  # 3
        return problem("DATE-FORMAT")
    if v.caregiver is None or not valid_hsa_id(v.caregiver[1]):  # 4
        return problem("UNIT-FORMAT").at("Organization.identifier")
    if v.careunit is None or not valid_hsa_id(v.careunit[1]):
        return problem("UNIT-FORMAT").at("Location.identifier")
    product = catalog.product(v.npl_id)
    if product is None:  # 5
        return problem("VACCINE-UNKNOWN")
    if not date_plausible(occurred, person.birth_date, product.programme.start, today):  # 6
        return problem("DATE-IMPLAUSIBLE")
    if v.lot is None or lot_missing(v.lot):  # 7
        return problem("BATCH-MISSING")
    if v.lot not in product.lots:  # 8
        return problem("BATCH-MISMATCH")
    dose = dose_number(v.dose)
    if product.is_covid19 and dose is None:  # 9
        return problem("DOSE-MISSING")
    return CheckedVaccination(
        identifier_system=v.identifier_system,
        identifier_value=v.identifier_value,
        status=v.status,
        person=person,
        date=occurred,
        product=product,
        lot=v.lot,
        dose=dose,
        caregiver=v.caregiver[1],
        careunit_system=v.careunit[0],
        careunit=v.careunit[1],
        resource=v.resource,
    )


def dose_interval_ok(occurred: dt.date, other_doses: Iterable[dt.date], min_days: int) -> bool:
    """Rule 10: no other COVID-19 dose on a *different* date fewer than ``min_days`` away.

    A dose on the same date is the duplicate control's business, not the interval's.
    """
    return all(other == occurred or abs((other - occurred).days) >= min_days for other in other_doses)
