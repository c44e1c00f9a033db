"""The NVR emulator against REGISTRY.md, over real HTTP.

One test per row of the register's answer table plus the transport rules (tokens, headers,
replay, rate limit, paging, delete, count, persistence). Each test talks to an emulator
started in a thread on a free port; the store is reset between tests.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from nvr_emulator.config import EmulatorConfig
from nvr_emulator.server import run_in_thread

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration

TODAY = dt.date(2025, 6, 15)
CLIENT_ID, CLIENT_SECRET = "vaxreport-dev", "dev-secret"
JOURNAL = "urn:vaxreport:test-journal"
PNR = "http://electronichealth.se/identifier/personnummer"
SNR = "http://electronichealth.se/identifier/samordningsnummer"
NPL = "urn:oid:1.2.752.129.2.1.5.1"
HSA = "urn:oid:1.2.752.29.4.19"
NVR_ERROR = "urn:vaxreport:nvr-error"

# Person ids: Skatteverket's test personnummer (never a real person).
CHILD = "201801012392"  # born 2018-01-01
CHILD_2 = "201801022383"  # born 2018-01-02
CHILD_3 = "201801032390"  # born 2018-01-03
ADULT = "199001012385"
ADULT_2 = "199001022384"
ADULT_3 = "199001032391"
TEEN = "200501012397"
# Skatteverket publishes no test samordningsnummer; this one is a public test vector of the
# personnummer/meta project (born 1973-02-28, day 88 = 28 + 60).
COORDINATION = "197302889931"

INFANRIX, INFANRIX_LOT = "20990101000011", "A21CD301"
PRIORIX, PRIORIX_LOT = "20990101000061", "A71CB401"
COMIRNATY, COMIRNATY_LOT = "20990101000181", "HH8191"
SPIKEVAX, SPIKEVAX_LOT = "20990101000211", "SPX3301"
CAREGIVER, CAREUNIT = "SE2321000016-15CQ", "SE2321000016-F3KL"
OTHER_CAREUNIT = "SE2321000016-F9ZZ"


def immunization(
    ident: str,
    *,
    person: str = CHILD,
    person_system: str = PNR,
    npl: str | None = INFANRIX,
    lot: str | None = INFANRIX_LOT,
    date: Any = "2019-03-01",
    dose: int | None = None,
    caregiver: str | None = CAREGIVER,
    careunit: str | None = CAREUNIT,
    status: str = "completed",
) -> dict[str, Any]:
    """An Immunization shaped like REGISTRY.md's "One vaccination, as an entry"."""
    coding = {"system": NPL, "code": npl, "display": "vaccin"} if npl else None
    resource: dict[str, Any] = {
        "resourceType": "Immunization",
        "contained": [
            {
                "resourceType": "Patient",
                "id": "patient",
                "identifier": [{"system": person_system, "value": person}],
            },
            {
                "resourceType": "Organization",
                "id": "caregiver",
                "identifier": [{"system": HSA, "value": caregiver}] if caregiver else [],
            },
            {
                "resourceType": "Location",
                "id": "careunit",
                "identifier": [{"system": HSA, "value": careunit}] if careunit else [],
                "managingOrganization": {"reference": "#caregiver"},
            },
            {
                "resourceType": "Medication",
                "id": "vaccine",
                "code": {"coding": [coding] if coding else []},
                "batch": {"lotNumber": lot},
            },
        ],
        "identifier": [{"system": JOURNAL, "value": ident}],
        "status": status,
        "vaccineCode": {"coding": [coding]} if coding else {"text": "Fritext-vaccin"},
        "patient": {"reference": "#patient"},
        "recorded": "2019-03-01T10:00:00+01:00",
        "primarySource": True,
        "performer": [{"actor": {"reference": "#caregiver"}}],
        "location": {"reference": "#careunit"},
    }
    if date is not None:
        resource["occurrenceDateTime"] = date
    if lot is not None:
        resource["lotNumber"] = lot
    if dose is not None:
        resource["protocolApplied"] = [{"doseNumberPositiveInt": dose}]
    return resource


def new(resource: dict[str, Any]) -> dict[str, Any]:
    """A create entry with ifNoneExist on the resource's identifier."""
    ident = resource["identifier"][0]
    return {
        "fullUrl": f"urn:uuid:{uuid.uuid4()}",
        "request": {
            "method": "POST",
            "url": "Immunization",
            "ifNoneExist": f"identifier={JOURNAL}|{ident['value']}",
        },
        "resource": resource,
    }


def update(register_id: str, resource: dict[str, Any]) -> dict[str, Any]:
    """An update entry of a register id."""
    return {"request": {"method": "PUT", "url": f"Immunization/{register_id}"}, "resource": resource}


def bundle(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "batch", "entry": list(entries)}


@dataclass
class Registry:
    """A small test client: token, traceability headers, JSON bodies."""

    http: httpx.Client
    token: str
    context_id: str = str(uuid.uuid4())

    def headers(self, request_id: str | None = None, **extra: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.token}",
            "X-Request-ID": request_id or str(uuid.uuid4()),
            "X-Context-ID": self.context_id,
            "X-User-Agent": "vaxreport-tests/0.1",
            "Content-Type": "application/fhir+json",
            **extra,
        }

    def post(self, body: Any, request_id: str | None = None) -> httpx.Response:
        return self.http.post("/fhir", json=body, headers=self.headers(request_id))

    def submit(self, *entries: dict[str, Any]) -> list[dict[str, Any]]:
        """POST a batch and return the response entries' ``response`` parts."""
        answer = self.post(bundle(*entries))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["resourceType"] == "Bundle"
        assert body["type"] == "batch-response"
        assert len(body["entry"]) == len(entries)
        return [entry["response"] for entry in body["entry"]]

    def one(self, entry: dict[str, Any]) -> dict[str, Any]:
        return self.submit(entry)[0]

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(path, params=params, headers=self.headers())

    def stats(self) -> dict[str, Any]:
        return self.http.get("/admin/stats").json()


def fetch_token(http: httpx.Client) -> str:
    answer = http.post("/oauth2/token", data={"grant_type": "client_credentials"}, auth=(CLIENT_ID, CLIENT_SECRET))
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    url, stop = run_in_thread(EmulatorConfig(rate_limit=0, today=TODAY))
    yield url
    stop()


@pytest.fixture
def http(emulator_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator_url, timeout=10) as client:
        client.post("/admin/reset").raise_for_status()
        yield client


@pytest.fixture
def registry(http: httpx.Client) -> Registry:
    return Registry(http, fetch_token(http))


def issue(response: dict[str, Any]) -> dict[str, Any]:
    return response["outcome"]["issue"][0]


def nvr_code(response: dict[str, Any]) -> str:
    return issue(response)["details"]["coding"][0]["code"]


def assert_refused(response: dict[str, Any], status: str, code: str, nvr: str) -> None:
    """An entry answer with this status, issue type and nvr-error code, and no stored location."""
    assert response["status"] == status
    found = issue(response)
    assert (found["severity"], found["code"]) == ("error", code)
    assert found["details"]["coding"][0] == {"system": NVR_ERROR, "code": nvr}
    assert found["diagnostics"]
    assert found["expression"]
    assert "location" not in response


def register_id(response: dict[str, Any]) -> str:
    return response["location"].split("/")[1]


# -- the answer table, row by row ---------------------------------------------------------


def test_new_vaccination_is_stored_201(registry: Registry) -> None:
    answer = registry.one(new(immunization("rec-1")))
    assert answer["status"] == "201 Created"
    assert answer["location"].startswith("Immunization/")
    assert answer["location"].endswith("/_history/1")
    assert answer["etag"] == 'W/"1"'
    assert "outcome" not in answer
    stored = registry.get(f"/fhir/Immunization/{register_id(answer)}")
    assert stored.status_code == 200
    assert stored.json()["lotNumber"] == INFANRIX_LOT
    assert stored.json()["meta"]["versionId"] == "1"
    assert registry.stats()["immunizations"] == 1


def test_same_identifier_again_is_duplicate_identifier(registry: Registry) -> None:
    first = registry.one(new(immunization("rec-1")))
    # Nothing else is checked: even a changed lot answers with the existing record.
    again = registry.one(new(immunization("rec-1", lot="A21CD302")))
    assert again["status"] == "200 OK"
    assert again["location"] == first["location"]
    assert (issue(again)["severity"], issue(again)["code"]) == ("information", "duplicate")
    assert nvr_code(again) == "DUPLICATE-IDENTIFIER"
    assert registry.stats()["immunizations"] == 1


def test_same_key_identical_content_is_duplicate(registry: Registry) -> None:
    first = registry.one(new(immunization("journal-a-1")))
    second = registry.one(new(immunization("journal-b-7")))
    assert second["status"] == "200 OK"
    assert second["location"] == first["location"]
    assert (issue(second)["severity"], issue(second)["code"]) == ("information", "duplicate")
    assert nvr_code(second) == "DUPLICATE"
    # The second care unit's identifier is not in the register: sending it again is DUPLICATE again.
    assert nvr_code(registry.one(new(immunization("journal-b-7")))) == "DUPLICATE"
    assert registry.stats()["immunizations"] == 1


def test_same_key_other_content_updates_existing(registry: Registry) -> None:
    first = registry.one(new(immunization("journal-a-1")))
    changed = registry.one(new(immunization("journal-b-7", lot="A21CD302")))
    assert changed["status"] == "200 OK"
    assert changed["location"] == first["location"].replace("/_history/1", "/_history/2")
    assert changed["etag"] == 'W/"2"'
    assert (issue(changed)["severity"], issue(changed)["code"]) == ("warning", "business-rule")
    assert nvr_code(changed) == "UPDATED-EXISTING"
    stored = registry.get(f"/fhir/Immunization/{register_id(first)}").json()
    assert stored["lotNumber"] == "A21CD302"
    # The updating identifier is now an alias of the record.
    alias = registry.one(new(immunization("journal-b-7", lot="A21CD302")))
    assert nvr_code(alias) == "DUPLICATE-IDENTIFIER"
    assert register_id(alias) == register_id(first)
    assert registry.stats()["immunizations"] == 1


def test_update_of_existing_id_is_200(registry: Registry) -> None:
    created = registry.one(new(immunization("rec-1")))
    updated = registry.one(update(register_id(created), immunization("rec-1", lot="A21CD303")))
    assert updated["status"] == "200 OK"
    assert updated["location"] == f"Immunization/{register_id(created)}/_history/2"
    assert "outcome" not in updated
    stored = registry.get(f"/fhir/Immunization/{register_id(created)}")
    assert stored.json()["lotNumber"] == "A21CD303"
    assert stored.headers["ETag"] == 'W/"2"'


def test_update_of_unknown_id_is_404(registry: Registry) -> None:
    answer = registry.one(update(str(uuid.uuid4()), immunization("rec-1")))
    assert_refused(answer, "404 Not Found", "not-found", "UNKNOWN-ID")
    assert issue(answer)["diagnostics"] == "Okänt id"


@pytest.mark.parametrize(
    ("person", "system"),
    [
        pytest.param(CHILD[:-1] + "3", PNR, id="checksum"),
        pytest.param(CHILD[2:], PNR, id="ten-digits"),
        pytest.param("20180101-2392", PNR, id="separator"),
        pytest.param("201802302390", PNR, id="no-such-date"),
        pytest.param(CHILD, "urn:vaxreport:unknown-id-system", id="unknown-system"),
        pytest.param(COORDINATION, PNR, id="samordningsnummer-as-personnummer"),
    ],
)
def test_person_id_malformed_is_personid_format(registry: Registry, person: str, system: str) -> None:
    answer = registry.one(new(immunization("rec-1", person=person, person_system=system)))
    assert_refused(answer, "400 Bad Request", "value", "PERSONID-FORMAT")
    assert issue(answer)["diagnostics"] == "Personnumret har fel format eller kontrollsiffra"


def test_samordningsnummer_is_accepted(registry: Registry) -> None:
    answer = registry.one(
        new(
            immunization(
                "rec-1",
                person=COORDINATION,
                person_system=SNR,
                date="2024-05-02",
                npl=COMIRNATY,
                lot=COMIRNATY_LOT,
                dose=1,
            )
        )
    )
    assert answer["status"] == "201 Created"


@pytest.mark.parametrize(
    "date",
    ["2019-02-30", "2019-3-1", "20190301", "2019-03-01T10:00:00+01:00", "", 20190301, None],
    ids=["no-such-day", "no-padding", "no-dashes", "date-time", "empty", "number", "absent"],
)
def test_date_malformed_is_date_format(registry: Registry, date: Any) -> None:
    answer = registry.one(new(immunization("rec-1", date=date)))
    assert_refused(answer, "400 Bad Request", "value", "DATE-FORMAT")
    assert issue(answer)["expression"] == ["Immunization.occurrenceDateTime"]


@pytest.mark.parametrize(
    ("person", "npl", "lot", "date", "dose"),
    [
        pytest.param(CHILD, INFANRIX, INFANRIX_LOT, "2025-06-16", None, id="future"),
        pytest.param(CHILD_2, INFANRIX, INFANRIX_LOT, "2018-01-01", None, id="before-birth"),
        pytest.param(ADULT, INFANRIX, INFANRIX_LOT, "2012-12-31", None, id="before-child-programme"),
        pytest.param(ADULT, COMIRNATY, COMIRNATY_LOT, "2020-12-26", 1, id="before-covid19"),
    ],
)
def test_date_implausible(registry: Registry, person: str, npl: str, lot: str, date: str, dose: int | None) -> None:
    answer = registry.one(new(immunization("rec-1", person=person, npl=npl, lot=lot, date=date, dose=dose)))
    assert_refused(answer, "422 Unprocessable Entity", "business-rule", "DATE-IMPLAUSIBLE")


def test_date_boundaries_are_plausible(registry: Registry) -> None:
    today = registry.one(new(immunization("rec-1", date=TODAY.isoformat())))
    birth_day = registry.one(new(immunization("rec-2", person=CHILD_2, date="2018-01-02")))
    covid_start = registry.one(
        new(immunization("rec-3", person=ADULT, npl=COMIRNATY, lot=COMIRNATY_LOT, date="2020-12-27", dose=1))
    )
    assert [today["status"], birth_day["status"], covid_start["status"]] == ["201 Created"] * 3


def test_covid19_doses_too_close_is_dose_interval(registry: Registry) -> None:
    def dose(ident: str, date: str, number: int, npl: str = COMIRNATY, lot: str = COMIRNATY_LOT) -> dict[str, Any]:
        return new(immunization(ident, person=ADULT, npl=npl, lot=lot, date=date, dose=number))

    # One batch: later entries see earlier ones.
    first, too_close, other_product_too_close, exactly_21 = registry.submit(
        dose("d1", "2021-05-01", 1),
        dose("d2", "2021-05-15", 2),
        dose("d2b", "2021-04-20", 2, SPIKEVAX, SPIKEVAX_LOT),
        dose("d3", "2021-05-22", 2),
    )
    assert first["status"] == "201 Created"
    assert_refused(too_close, "422 Unprocessable Entity", "business-rule", "DOSE-INTERVAL")
    assert_refused(other_product_too_close, "422 Unprocessable Entity", "business-rule", "DOSE-INTERVAL")
    assert exactly_21["status"] == "201 Created"


@pytest.mark.parametrize(
    ("npl", "lot"),
    [
        pytest.param("20990101009999", INFANRIX_LOT, id="unknown-npl"),
        pytest.param(None, INFANRIX_LOT, id="free-text-name"),
    ],
)
def test_vaccine_not_in_catalog_is_vaccine_unknown(registry: Registry, npl: str | None, lot: str) -> None:
    answer = registry.one(new(immunization("rec-1", npl=npl, lot=lot)))
    assert_refused(answer, "422 Unprocessable Entity", "code-invalid", "VACCINE-UNKNOWN")


@pytest.mark.parametrize("lot", [None, "", "   "], ids=["absent", "empty", "blank"])
def test_batch_missing(registry: Registry, lot: str | None) -> None:
    answer = registry.one(new(immunization("rec-1", lot=lot)))
    assert_refused(answer, "422 Unprocessable Entity", "required", "BATCH-MISSING")
    assert issue(answer)["expression"] == ["Immunization.lotNumber"]


@pytest.mark.parametrize("lot", [PRIORIX_LOT, "NOSUCHLOT1", INFANRIX_LOT.lower()], ids=["other", "none", "case"])
def test_batch_of_another_vaccine_is_batch_mismatch(registry: Registry, lot: str) -> None:
    answer = registry.one(new(immunization("rec-1", lot=lot)))
    assert_refused(answer, "422 Unprocessable Entity", "business-rule", "BATCH-MISMATCH")


def test_covid19_without_dose_number_is_dose_missing(registry: Registry) -> None:
    answer = registry.one(
        new(immunization("rec-1", person=ADULT, npl=COMIRNATY, lot=COMIRNATY_LOT, date="2021-05-01", dose=None))
    )
    assert_refused(answer, "422 Unprocessable Entity", "required", "DOSE-MISSING")
    # Other programmes need no dose number.
    assert registry.one(new(immunization("rec-2", dose=None)))["status"] == "201 Created"


@pytest.mark.parametrize(
    ("caregiver", "careunit"),
    [
        pytest.param("SE232100001-15CQ", CAREUNIT, id="caregiver-nine-digits"),
        pytest.param(CAREGIVER, None, id="careunit-missing"),
        pytest.param(CAREGIVER, "SE2321000016-ÅÄÖ", id="careunit-letters"),
        pytest.param("SE2321000016-" + "A" * 19, CAREUNIT, id="too-long"),
    ],
)
def test_unit_id_malformed_is_unit_format(registry: Registry, caregiver: str, careunit: str | None) -> None:
    answer = registry.one(new(immunization("rec-1", caregiver=caregiver, careunit=careunit)))
    assert_refused(answer, "400 Bad Request", "value", "UNIT-FORMAT")


def _without_identifier() -> dict[str, Any]:
    resource = immunization("rec-1")
    del resource["identifier"]
    return resource


def _without_patient() -> dict[str, Any]:
    resource = immunization("rec-1")
    resource["contained"] = resource["contained"][1:]
    return resource


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(new(immunization("rec-1")) | {"resource": {"resourceType": "Patient"}}, id="not-immunization"),
        pytest.param({"request": {"method": "POST", "url": "Immunization"}}, id="no-resource"),
        pytest.param(
            {"request": {"method": "POST", "url": "Immunization"}, "resource": _without_identifier()},
            id="no-identifier",
        ),
        pytest.param(
            {"request": {"method": "POST", "url": "Immunization"}, "resource": _without_patient()},
            id="no-contained-patient",
        ),
        pytest.param(
            {"request": {"method": "PATCH", "url": "Immunization/x"}, "resource": immunization("rec-1")},
            id="other-method",
        ),
    ],
)
def test_entry_not_an_immunization_is_structure(registry: Registry, entry: dict[str, Any]) -> None:
    answer = registry.one(entry)
    assert_refused(answer, "400 Bad Request", "structure", "STRUCTURE")


def test_first_failing_rule_wins_and_entries_keep_their_order(registry: Registry) -> None:
    answers = registry.submit(
        new(immunization("bad-person-and-lot", person=CHILD[:-1] + "3", lot=None)),
        new(immunization("good", person=CHILD_3)),
        new(immunization("bad-lot-and-dose", person=TEEN, npl=COMIRNATY, lot="A21CD301", date="2022-01-10")),
    )
    assert [a["status"] for a in answers] == ["400 Bad Request", "201 Created", "422 Unprocessable Entity"]
    assert nvr_code(answers[0]) == "PERSONID-FORMAT"
    assert nvr_code(answers[2]) == "BATCH-MISMATCH"


# -- transport ------------------------------------------------------------------------------


def test_no_token_is_401_login(registry: Registry) -> None:
    headers = registry.headers()
    del headers["Authorization"]
    answer = registry.http.post("/fhir", json=bundle(new(immunization("rec-1"))), headers=headers)
    assert answer.status_code == 401
    assert answer.json()["issue"][0]["code"] == "login"
    assert answer.headers["X-Request-ID"] == headers["X-Request-ID"]


def test_unknown_token_is_401_login(registry: Registry) -> None:
    answer = registry.http.get("/fhir/Medication", headers=registry.headers(Authorization="Bearer not-a-token"))
    assert answer.status_code == 401
    assert answer.json()["resourceType"] == "OperationOutcome"
    assert answer.json()["issue"][0]["code"] == "login"


def test_expired_token_is_401_expired() -> None:
    url, stop = run_in_thread(EmulatorConfig(token_ttl=1, rate_limit=0))
    try:
        with httpx.Client(base_url=url) as http:
            registry = Registry(http, fetch_token(http))
            assert registry.get("/fhir/Medication").status_code == 200
            time.sleep(1.1)
            answer = registry.get("/fhir/Medication")
            assert answer.status_code == 401
            assert answer.json()["issue"][0]["code"] == "expired"
    finally:
        stop()


def test_token_with_form_credentials(http: httpx.Client) -> None:
    answer = http.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300
    assert body["access_token"]


@pytest.mark.parametrize(
    ("data", "auth"),
    [
        pytest.param({"grant_type": "client_credentials"}, (CLIENT_ID, "wrong"), id="wrong-secret"),
        pytest.param({"grant_type": "client_credentials"}, ("someone-else", CLIENT_SECRET), id="unknown-client"),
        pytest.param({"grant_type": "client_credentials"}, None, id="no-credentials"),
    ],
)
def test_token_bad_client_is_invalid_client(http: httpx.Client, data: dict[str, str], auth: Any) -> None:
    answer = http.post("/oauth2/token", data=data, auth=auth)
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_client"


def test_token_other_grant_is_unsupported_grant_type(http: httpx.Client) -> None:
    answer = http.post("/oauth2/token", data={"grant_type": "password"}, auth=(CLIENT_ID, CLIENT_SECRET))
    assert answer.status_code == 400
    assert answer.json()["error"] == "unsupported_grant_type"


def test_more_than_100_entries_is_400(registry: Registry) -> None:
    entries = [new(immunization(f"rec-{i}")) for i in range(101)]
    answer = registry.post(bundle(*entries))
    assert answer.status_code == 400
    assert answer.json()["issue"][0]["code"] == "too-costly"
    assert registry.stats()["entries"] == 0


def test_100_entries_are_processed(registry: Registry) -> None:
    answers = registry.submit(*[new(immunization(f"rec-{i}")) for i in range(100)])
    assert answers[0]["status"] == "201 Created"
    assert {nvr_code(a) for a in answers[1:]} == {"DUPLICATE"}


def test_delete_inside_a_bundle_is_400(registry: Registry) -> None:
    created = registry.one(new(immunization("rec-1")))
    answer = registry.post(
        bundle(
            new(immunization("rec-2", person=CHILD_2)),
            {"request": {"method": "DELETE", "url": f"Immunization/{register_id(created)}"}},
        )
    )
    assert answer.status_code == 400
    assert answer.json()["resourceType"] == "OperationOutcome"
    assert registry.stats()["immunizations"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {"resourceType": "Bundle", "type": "transaction", "entry": [{}]},
        {"resourceType": "Bundle", "type": "batch"},
        {"resourceType": "Immunization"},
        [],
    ],
    ids=["transaction", "no-entries", "not-a-bundle", "not-an-object"],
)
def test_not_a_batch_bundle_is_400(registry: Registry, body: Any) -> None:
    answer = registry.post(body)
    assert answer.status_code == 400
    assert answer.json()["issue"][0]["code"] == "structure"


def test_wrong_content_type_is_415(registry: Registry) -> None:
    answer = registry.http.post("/fhir", content=b"<Bundle/>", headers=registry.headers(**{"Content-Type": "text/xml"}))
    assert answer.status_code == 415
    assert answer.json()["resourceType"] == "OperationOutcome"


def test_plain_json_content_type_is_accepted(registry: Registry) -> None:
    answer = registry.http.post(
        "/fhir",
        json=bundle(new(immunization("rec-1"))),
        headers=registry.headers(**{"Content-Type": "application/json; charset=utf-8"}),
    )
    assert answer.status_code == 200


@pytest.mark.parametrize("header", ["X-Request-ID", "X-Context-ID", "X-User-Agent"])
def test_missing_traceability_header_is_400(registry: Registry, header: str) -> None:
    headers = registry.headers()
    del headers[header]
    answer = registry.http.post("/fhir", json=bundle(new(immunization("rec-1"))), headers=headers)
    assert answer.status_code == 400
    found = answer.json()["issue"][0]
    assert found["code"] == "required"
    assert header in found["diagnostics"]
    assert registry.stats()["entries"] == 0


def test_trace_ids_are_echoed(registry: Registry) -> None:
    headers = registry.headers()
    answer = registry.http.post("/fhir", json=bundle(new(immunization("rec-1"))), headers=headers)
    assert answer.headers["X-Request-ID"] == headers["X-Request-ID"]
    assert answer.headers["X-Context-ID"] == headers["X-Context-ID"]
    assert answer.headers["Content-Type"].startswith("application/fhir+json")


def test_same_request_id_replays_the_first_answer(registry: Registry) -> None:
    request_id = str(uuid.uuid4())
    body = bundle(new(immunization("rec-1")), new(immunization("rec-2", person=CHILD_2)))
    first = registry.post(body, request_id)
    stats = registry.stats()
    again = registry.post(body, request_id)
    assert again.status_code == first.status_code == 200
    assert again.content == first.content
    assert again.headers["X-Replayed"] == "true"
    assert registry.stats() == stats
    # A new request id is processed: now both entries are duplicates of themselves.
    fresh = registry.post(body)
    assert [nvr_code(e["response"]) for e in fresh.json()["entry"]] == ["DUPLICATE-IDENTIFIER"] * 2


def test_rate_limit_is_429_and_a_refused_request_id_is_processed_later() -> None:
    url, stop = run_in_thread(EmulatorConfig(rate_limit=3, today=TODAY))
    try:
        with httpx.Client(base_url=url) as http:
            registry = Registry(http, fetch_token(http))
            request_id = str(uuid.uuid4())
            answers = [registry.get("/fhir/Medication", _count=1) for _ in range(3)]
            answers.append(registry.post(bundle(new(immunization("rec-1"))), request_id))
            refused = [a for a in answers if a.status_code == 429]
            assert refused, [a.status_code for a in answers]
            assert refused[0].headers["Retry-After"] == "1"
            assert refused[0].json()["issue"][0]["code"] == "throttled"
            assert answers[-1].status_code == 429
            time.sleep(1.05)
            retried = registry.post(bundle(new(immunization("rec-1"))), request_id)
            assert retried.status_code == 200
            assert retried.json()["entry"][0]["response"]["status"] == "201 Created"
    finally:
        stop()


def test_catalog_paging_lists_all_22_products(registry: Registry) -> None:
    page = registry.get("/fhir/Medication", _count=5)
    products: list[dict[str, Any]] = []
    pages = 0
    while True:
        assert page.status_code == 200, page.text
        body = page.json()
        assert body["type"] == "searchset"
        assert body["total"] == 22
        products += [entry["resource"] for entry in body["entry"]]
        pages += 1
        links = {link["relation"]: link["url"] for link in body["link"]}
        if "next" not in links:
            break
        assert links["next"].startswith("http://127.0.0.1:")
        page = registry.http.get(links["next"], headers=registry.headers())
    assert pages == 5
    assert len({p["id"] for p in products}) == 22
    covid = [p for p in products if {"url": "urn:vaxreport:programme", "valueCode": "covid19"} in p["extension"]]
    assert len(covid) == 5
    comirnaty = next(p for p in products if p["code"]["coding"][0]["code"] == COMIRNATY)
    assert comirnaty["code"]["coding"][0]["system"] == NPL
    assert comirnaty["meta"]["tag"] == [{"system": "urn:vaxreport:synthetic", "code": "synthetic"}]
    assert comirnaty["batch"]["lotNumber"] == COMIRNATY_LOT
    lots = [e["valueString"] for e in comirnaty["extension"] if e["url"] == "urn:vaxreport:batch"]
    assert lots == ["HH8191", "HH8192", "HH8193"]


def test_catalog_page_size_is_capped_at_100(registry: Registry) -> None:
    body = registry.get("/fhir/Medication", _count=500).json()
    assert len(body["entry"]) == 22
    assert [link["relation"] for link in body["link"]] == ["self"]
    assert len(registry.get("/fhir/Medication").json()["entry"]) == 20


def test_delete_is_204_then_404(registry: Registry) -> None:
    created = registry.one(new(immunization("rec-1")))
    path = f"/fhir/Immunization/{register_id(created)}"
    first = registry.http.delete(path, headers=registry.headers())
    assert first.status_code == 204
    second = registry.http.delete(path, headers=registry.headers())
    assert second.status_code == 404
    assert second.json()["issue"][0]["details"]["coding"][0]["code"] == "UNKNOWN-ID"
    assert registry.get(path).status_code == 404
    assert registry.stats()["immunizations"] == 0
    listed = registry.http.get("/admin/immunizations").json()
    assert [(r["id"], r["deleted"]) for r in listed] == [(register_id(created), True)]
    # After a delete the identifier is free again: sending it creates a new record.
    assert registry.one(new(immunization("rec-1")))["status"] == "201 Created"


def test_count_by_period_and_care_unit(registry: Registry) -> None:
    registry.submit(
        new(immunization("a", person=CHILD, date="2019-03-01")),
        new(immunization("b", person=CHILD_2, date="2019-03-31")),
        new(immunization("c", person=CHILD_3, date="2019-04-01")),
        new(immunization("d", person=TEEN, date="2019-03-15", careunit=OTHER_CAREUNIT)),
    )

    def count(**params: Any) -> int:
        answer = registry.get("/fhir/Immunization", _summary="count", **params)
        assert answer.status_code == 200, answer.text
        assert "entry" not in answer.json()
        return answer.json()["total"]

    march = {"date": ["ge2019-03-01", "lt2019-04-01"]}
    assert count(**march) == 3
    assert count(**march, **{"location.identifier": f"{HSA}|{CAREUNIT}"}) == 2
    assert count(**march, **{"location.identifier": f"urn:oid:1.2.752.129.2.1.4.1|{OTHER_CAREUNIT}"}) == 1
    assert count(date="ge2019-04-01") == 1
    assert registry.get("/fhir/Immunization", date="march", _summary="count").status_code == 400


def test_admin_endpoints(registry: Registry) -> None:
    registry.submit(new(immunization("rec-1")), new(immunization("rec-1")), new(immunization("x", lot=None)))
    stats = registry.stats()
    assert stats["immunizations"] == 1
    assert stats["posts"] == 1
    assert stats["entries"] == 3
    assert stats["by_outcome"] == {"CREATED": 1, "DUPLICATE-IDENTIFIER": 1, "BATCH-MISSING": 1}
    [record] = registry.http.get("/admin/immunizations").json()
    assert record | {"id": "-"} == {
        "id": "-",
        "identifier_system": JOURNAL,
        "identifier_value": "rec-1",
        "person_id": CHILD,
        "npl_id": INFANRIX,
        "date": "2019-03-01",
        "lot": INFANRIX_LOT,
        "dose": None,
        "version": 1,
        "deleted": False,
    }
    assert registry.http.post("/admin/reset").status_code == 200
    assert registry.stats()["immunizations"] == 0


def test_file_store_survives_a_restart(tmp_path: Path) -> None:
    config = EmulatorConfig(db=tmp_path / "nvr.sqlite", rate_limit=0, today=TODAY)
    url, stop = run_in_thread(config)
    try:
        with httpx.Client(base_url=url) as http:
            registry = Registry(http, fetch_token(http))
            created = registry.one(new(immunization("rec-1")))
            request_id = str(uuid.uuid4())
            first = registry.post(bundle(new(immunization("rec-2", person=CHILD_2))), request_id)
    finally:
        stop()
    url, stop = run_in_thread(config)
    try:
        with httpx.Client(base_url=url) as http:
            stale = Registry(http, registry.token)
            assert stale.get("/fhir/Medication").status_code == 401  # tokens do not survive
            registry = Registry(http, fetch_token(http))
            assert registry.get(f"/fhir/Immunization/{register_id(created)}").status_code == 200
            assert nvr_code(registry.one(new(immunization("rec-1")))) == "DUPLICATE-IDENTIFIER"
            assert (
                registry.post(bundle(new(immunization("rec-2", person=CHILD_2))), request_id).content == first.content
            )
            assert registry.stats()["immunizations"] == 2
    finally:
        stop()
