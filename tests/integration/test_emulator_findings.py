"""The emulator's later findings and silent drops, over real HTTP against a real emulator.

REGISTRY.md rule 2: the register looks each person up in the population register (the
emulator's is Skatteverket's test list) and reports a miss later, in ``GET /reports/errors``,
not in the HTTP answer. A listed test personnummer is found; a synthetic samordningsnummer
(Skatteverket publishes no test ones) is not: ``PERSON-NOT-FOUND``. Also: findings injected
through ``POST /admin/findings``, the report's gate (token, headers) and date checks, findings
in a file store across a restart (with ``--findings-delay-days``), and the ``rate_silent_drop``
fault (201 Created, nothing stored).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from tests import register_entries as entries
from tests.conftest import start_emulator
from tests.register_entries import INFANRIX_LOT

from nvr_emulator.config import EmulatorConfig
from nvr_emulator.server import run_in_thread

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration

TODAY = dt.date(2025, 6, 15)
CLIENT = ("vaxreport-dev", "dev-secret")
JOURNAL = "urn:vaxreport:findings-tests"
NOT_FOUND_TEXT = "Personen finns inte i folkbokföringen"
# Skatteverket's test personnummer (shared/data/skatteverket-testpersonnummer.txt), born January 2018.
LISTED = ("201801012392", "201801022383", "201801032390", "201801042381", "201801052398", "201801062389")
VACCINATED = dt.date(2019, 1, 1)


def luhn_digit(nine: str) -> str:
    """The Luhn check digit of nine digits."""
    total = 0
    for position, char in enumerate(reversed(nine)):
        digit = int(char) * (2 if position % 2 == 0 else 1)
        total += digit - 9 if digit > 9 else digit
    return str((10 - total % 10) % 10)


def samordningsnummer(personnummer: str) -> str:
    """The samordningsnummer form of a test personnummer: day + 60, Luhn over the last 10 recomputed."""
    eleven = personnummer[:6] + f"{int(personnummer[6:8]) + 60:02d}" + personnummer[8:11]
    return eleven + luhn_digit(eleven[2:])


SYNTHETIC = samordningsnummer(LISTED[0])  # 20180161239x: in no population register


def immunization(ident: str, person: str = LISTED[0], lot: str = INFANRIX_LOT) -> dict[str, Any]:
    """A valid child-programme vaccination shaped like REGISTRY.md's entry."""
    return entries.immunization(JOURNAL, ident, person, VACCINATED, lot)


def batch(*resources: dict[str, Any]) -> dict[str, Any]:
    entries = []
    for resource in resources:
        ident = resource["identifier"][0]
        entries.append(
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": resource,
                "request": {
                    "method": "POST",
                    "url": "Immunization",
                    "ifNoneExist": f"identifier={ident['system']}|{ident['value']}",
                },
            }
        )
    return {"resourceType": "Bundle", "type": "batch", "entry": entries}


def put_entry(register_id: str, resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"resource": resource, "request": {"method": "PUT", "url": f"Immunization/{register_id}"}}],
    }


def register_id(response: dict[str, Any]) -> str:
    return response["location"].split("/")[1]


@dataclass
class Client:
    """Plain httpx against one emulator, with a token and fresh traceability headers per call."""

    base: str
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))
    token: str = ""

    def login(self) -> None:
        answer = self.http.post(f"{self.base}/oauth2/token", data={"grant_type": "client_credentials"}, auth=CLIENT)
        assert answer.status_code == 200, answer.text
        self.token = answer.json()["access_token"]

    def headers(self, request_id: str | None = None) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.token}",
            "X-Request-ID": request_id or str(uuid.uuid4()),
            "X-Context-ID": str(uuid.uuid4()),
            "X-User-Agent": "findings-tests/1.0",
            "Content-Type": "application/fhir+json",
        }

    def post(self, bundle: dict[str, Any], request_id: str | None = None) -> httpx.Response:
        return self.http.post(f"{self.base}/fhir", json=bundle, headers=self.headers(request_id))

    def entries(self, bundle: dict[str, Any], request_id: str | None = None) -> list[dict[str, Any]]:
        answer = self.post(bundle, request_id)
        assert answer.status_code == 200, answer.text
        return [entry["response"] for entry in answer.json()["entry"]]

    def report(self, start: str, end: str) -> httpx.Response:
        return self.http.get(f"{self.base}/reports/errors", params={"from": start, "to": end}, headers=self.headers())

    def rows(self, start: dt.date, end: dt.date) -> list[dict[str, Any]]:
        answer = self.report(start.isoformat(), end.isoformat())
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("application/json")
        body = answer.json()
        assert (body["from"], body["to"]) == (start.isoformat(), end.isoformat())
        return body["rows"]

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, f"{self.base}/admin/{path}", **kwargs)

    def findings(self) -> list[dict[str, Any]]:
        return self.admin("GET", "findings").json()

    def stored(self) -> list[dict[str, Any]]:
        return self.admin("GET", "immunizations").json()


@pytest.fixture(scope="module")
def emulator() -> Iterator[str]:
    base, stop = run_in_thread(EmulatorConfig(rate_limit=0, today=TODAY))
    yield base
    stop()


@pytest.fixture
def client(emulator: str) -> Iterator[Client]:
    client = Client(emulator)
    assert client.admin("POST", "reset").status_code == 200
    assert client.admin("PUT", "faults", json={}).status_code == 200
    client.login()
    yield client
    client.http.close()


def test_samordningsnummer_is_synthetic_but_well_formed() -> None:
    assert SYNTHETIC[6:8] == "61"
    assert SYNTHETIC.isdigit()
    assert len(SYNTHETIC) == 12
    assert luhn_digit(LISTED[0][2:11]) == LISTED[0][-1]  # the helper agrees with Skatteverket's list


def test_listed_person_has_no_finding_synthetic_one_is_not_found(client: Client) -> None:
    listed, synthetic = client.entries(batch(immunization("listed"), immunization("synthetic", SYNTHETIC)))
    # The population look-up is not in the HTTP answer: both are plainly created.
    assert [listed["status"], synthetic["status"]] == ["201 Created", "201 Created"]
    assert "outcome" not in listed
    assert "outcome" not in synthetic
    synthetic_id = register_id(synthetic)

    expected = {
        "register_id": synthetic_id,
        "identifier": {"system": JOURNAL, "value": "synthetic"},
        "code": "PERSON-NOT-FOUND",
        "text": NOT_FOUND_TEXT,
        "found": TODAY.isoformat(),
    }
    assert client.findings() == [{"id": client.findings()[0]["id"], **expected, "deleted": False}]
    # Inclusive from, exclusive to, on the found date.
    assert client.rows(TODAY, TODAY + dt.timedelta(days=1)) == [expected]
    assert client.rows(TODAY - dt.timedelta(days=6), TODAY + dt.timedelta(days=1)) == [expected]
    assert client.rows(TODAY - dt.timedelta(days=7), TODAY) == []
    assert client.rows(TODAY + dt.timedelta(days=1), TODAY + dt.timedelta(days=8)) == []

    # Updating the record stores it again: looked up again, the same finding is not repeated that day.
    changed = immunization("synthetic", SYNTHETIC, lot="A21CD302")
    (updated,) = client.entries(put_entry(synthetic_id, changed))
    assert updated["status"] == "200 OK"
    assert len(client.findings()) == 1
    # A deleted record's findings are no longer reported (the admin listing still has them).
    deleted = client.http.delete(f"{client.base}/fhir/Immunization/{synthetic_id}", headers=client.headers())
    assert deleted.status_code == 204
    assert client.rows(TODAY, TODAY + dt.timedelta(days=1)) == []
    assert [f["deleted"] for f in client.findings()] == [True]


def test_updated_existing_is_reported_under_the_new_identifier(client: Client) -> None:
    (first,) = client.entries(batch(immunization("old-id", SYNTHETIC)))
    (again,) = client.entries(batch(immunization("new-id", SYNTHETIC, lot="A21CD302")))
    assert again["outcome"]["issue"][0]["details"]["coding"][0]["code"] == "UPDATED-EXISTING"
    rows = client.rows(TODAY, TODAY + dt.timedelta(days=1))
    assert [(r["register_id"], r["identifier"]["value"]) for r in rows] == [
        (register_id(first), "old-id"),
        (register_id(first), "new-id"),
    ]


def test_admin_injects_findings_of_other_kinds(client: Client) -> None:
    a, b = client.entries(batch(immunization("a", LISTED[1]), immunization("b", LISTED[2])))
    a_id, b_id = register_id(a), register_id(b)
    injected = client.admin(
        "POST",
        "findings",
        json={
            "register_id": b_id,
            "code": "DUPLICATE-LATER",
            "text": "Dubblett upptäckt vid avstämning",
            "found": "2025-06-10",
        },
    )
    assert injected.status_code == 201, injected.text
    assert injected.json() == {
        "id": injected.json()["id"],
        "register_id": b_id,
        "identifier": {"system": JOURNAL, "value": "b"},
        "code": "DUPLICATE-LATER",
        "text": "Dubblett upptäckt vid avstämning",
        "found": "2025-06-10",
        "deleted": False,
    }
    # Default text for a known code; default found = the emulator's today.
    assert client.admin("POST", "findings", json={"register_id": a_id, "code": "DUPLICATE-LATER"}).status_code == 201
    other = {"register_id": a_id, "code": "SOMETHING-ELSE", "text": "Något annat", "found": "2025-06-12"}
    assert client.admin("POST", "findings", json=other).status_code == 201

    rows = client.rows(dt.date(2025, 6, 9), dt.date(2025, 6, 16))
    assert [(r["found"], r["register_id"], r["code"]) for r in rows] == sorted(
        [
            ("2025-06-10", b_id, "DUPLICATE-LATER"),
            ("2025-06-12", a_id, "SOMETHING-ELSE"),
            ("2025-06-15", a_id, "DUPLICATE-LATER"),
        ]
    )
    assert client.rows(dt.date(2025, 6, 11), dt.date(2025, 6, 15)) == [rows[1]]

    refused = {
        "unknown record": ({"register_id": str(uuid.uuid4()), "code": "DUPLICATE-LATER"}, 404),
        "bad date": ({"register_id": a_id, "code": "DUPLICATE-LATER", "found": "2025-02-30"}, 400),
        "no code": ({"register_id": a_id, "text": "x"}, 400),
        "no text for unknown code": ({"register_id": a_id, "code": "NEW-CODE"}, 400),
        "unknown field": ({"register_id": a_id, "code": "DUPLICATE-LATER", "severity": "x"}, 400),
        "not an object": ([a_id], 400),
    }
    for name, (body, status) in refused.items():
        answer = client.admin("POST", "findings", json=body)
        assert answer.status_code == status, (name, answer.text)
        assert "detail" in answer.json()
    assert len(client.findings()) == 3


def test_report_needs_token_and_traceability_headers(client: Client) -> None:
    url = f"{client.base}/reports/errors"
    params = {"from": "2025-06-09", "to": "2025-06-16"}

    def issue(answer: httpx.Response, status: int) -> list[tuple[str, list[str]]]:
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"].startswith("application/fhir+json")
        outcome = answer.json()
        assert outcome["resourceType"] == "OperationOutcome"
        return [(i["code"], i.get("expression", [])) for i in outcome["issue"]]

    no_token = {k: v for k, v in client.headers().items() if k != "Authorization"}
    assert issue(client.http.get(url, params=params, headers=no_token), 401) == [("login", [])]
    wrong = client.headers() | {"Authorization": "Bearer not-a-token"}
    assert issue(client.http.get(url, params=params, headers=wrong), 401) == [("login", [])]

    headers = client.headers()
    for name in ("X-Request-ID", "X-Context-ID", "X-User-Agent"):
        without = {k: v for k, v in headers.items() if k != name}
        assert issue(client.http.get(url, params=params, headers=without), 400) == [("required", [name])]
    not_uuid = client.headers() | {"X-Request-ID": "request-1"}
    answer = client.http.get(url, params=params, headers=not_uuid)
    assert issue(answer, 400) == [("value", ["X-Request-ID"])]
    assert answer.headers["X-Request-ID"] == "request-1"  # echoed, errors included

    assert client.admin("POST", "tokens/expire").json()["expired"] >= 1
    assert issue(client.http.get(url, params=params, headers=client.headers()), 401) == [("expired", [])]
    client.login()
    ok = client.http.get(url, params=params, headers=headers | {"Authorization": f"Bearer {client.token}"})
    assert ok.status_code == 200
    assert ok.json() == {"from": "2025-06-09", "to": "2025-06-16", "rows": []}
    assert ok.headers["X-Request-ID"] == headers["X-Request-ID"]


@pytest.mark.parametrize(
    ("query", "issues"),
    [
        ({"to": "2025-06-16"}, [("required", ["from"])]),
        ({"from": "2025-06-09"}, [("required", ["to"])]),
        ({}, [("required", ["from"]), ("required", ["to"])]),
        ({"from": "", "to": "2025-06-16"}, [("required", ["from"])]),
        ({"from": "2025-6-9", "to": "2025-06-16"}, [("value", ["from"])]),
        ({"from": "20250609", "to": "2025-06-16"}, [("value", ["from"])]),
        ({"from": "2025-06-09", "to": "2025-02-30"}, [("value", ["to"])]),
        ({"from": "2025-06-09T00:00:00", "to": "2025-06-16"}, [("value", ["from"])]),
        ({"from": "2025-06-09", "to": "next week"}, [("value", ["to"])]),
        ({"from": "2025-06-09", "to": "2025-06-09"}, [("value", ["from", "to"])]),
        ({"from": "2025-06-16", "to": "2025-06-09"}, [("value", ["from", "to"])]),
        ({"from": ["2025-06-01", "2025-06-09"], "to": "2025-06-16"}, [("value", ["from"])]),
    ],
)
def test_report_refuses_bad_dates(client: Client, query: dict[str, Any], issues: list[tuple[str, list[str]]]) -> None:
    answer = client.http.get(f"{client.base}/reports/errors", params=query, headers=client.headers())
    assert answer.status_code == 400, answer.text
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert [(i["code"], i["expression"]) for i in outcome["issue"]] == issues
    assert all(i["severity"] == "error" and i["diagnostics"] for i in outcome["issue"])


def test_findings_survive_a_restart_and_wait_for_the_delay(tmp_path: Path) -> None:
    db = str(tmp_path / "register.sqlite")
    week = (dt.date(2025, 6, 9), dt.date(2025, 6, 23))
    first = start_emulator(tmp_path, "--db", db, "--today", "2025-06-15", "--findings-delay-days", "2")
    try:
        client = Client(first.base_url)
        client.login()
        listed, synthetic = client.entries(batch(immunization("listed"), immunization("synthetic", SYNTHETIC)))
        synthetic_id, listed_id = register_id(synthetic), register_id(listed)
        # Looked up two days after storing: recorded, but not found yet on the emulator's today.
        assert [(f["register_id"], f["found"]) for f in client.findings()] == [(synthetic_id, "2025-06-17")]
        assert client.rows(*week) == []
        injected = {"register_id": listed_id, "code": "DUPLICATE-LATER", "found": "2025-06-12"}
        assert client.admin("POST", "findings", json=injected).status_code == 201
    finally:
        first.stop()

    again = start_emulator(tmp_path, "--db", db, "--today", "2025-06-17")
    try:
        client = Client(again.base_url)
        client.login()
        rows = client.rows(*week)
        assert [(r["found"], r["register_id"], r["code"], r["identifier"]["value"]) for r in rows] == [
            ("2025-06-12", listed_id, "DUPLICATE-LATER", "listed"),
            ("2025-06-17", synthetic_id, "PERSON-NOT-FOUND", "synthetic"),
        ]
        assert rows[1]["text"] == NOT_FOUND_TEXT
        assert client.rows(dt.date(2025, 6, 13), dt.date(2025, 6, 17)) == []
    finally:
        again.stop()


def test_cli_refuses_a_negative_delay(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="findings-delay-days"):
        start_emulator(tmp_path, "--findings-delay-days", "-1")


def test_silent_drop_answers_created_but_stores_nothing(client: Client) -> None:
    assert client.admin("PUT", "faults", json={"seed": 1, "rate_silent_drop": 1.0}).status_code == 200
    resources = [immunization("kept-not", LISTED[0]), immunization("lost-too", SYNTHETIC)]
    resources.append(immunization("refused", LISTED[1], lot="NO-SUCH-LOT"))
    request_id = str(uuid.uuid4())
    dropped_a, dropped_b, refused = client.entries(batch(*resources), request_id)
    for dropped in (dropped_a, dropped_b):
        assert dropped["status"] == "201 Created"
        assert dropped["location"].endswith("/_history/1")
        assert dropped["etag"] == 'W/"1"'
    assert refused["status"] == "422 Unprocessable Entity"  # only what would be stored is dropped
    assert client.stored() == []
    assert client.findings() == []  # nothing stored, nothing looked up
    read = client.http.get(
        f"{client.base}/fhir/{dropped_a['location'].rsplit('/_history', 1)[0]}", headers=client.headers()
    )
    assert read.status_code == 404

    stats = client.admin("GET", "stats").json()
    assert stats["immunizations"] == 0
    assert stats["faults"] == {"silent_drop": 2}
    assert stats["by_outcome"] == {"CREATED": 2, "BATCH-MISMATCH": 1}
    (logged,) = client.admin("GET", "faults").json()["recent"]
    assert (logged["fault"], logged["entries"]) == ("silent_drop", [0, 1])
    assert logged["ids"] == [register_id(dropped_a), register_id(dropped_b)]

    # The same request id replays the same answer; nothing is stored either way.
    replay = client.post(batch(*resources), request_id)
    assert replay.headers["X-Replayed"] == "true"
    assert client.stored() == []
    # Reconciliation found them missing: sent again under a new id, they are stored for real.
    assert client.admin("PUT", "faults", json={}).status_code == 200
    statuses = [r["status"] for r in client.entries(batch(*resources[:2]))]
    assert statuses == ["201 Created", "201 Created"]
    assert sorted(r["identifier_value"] for r in client.stored()) == ["kept-not", "lost-too"]


def test_silent_drop_is_deterministic_by_seed(client: Client) -> None:
    resources = [immunization(f"e{i}", person) for i, person in enumerate(LISTED)]

    def run() -> list[str]:
        assert client.admin("POST", "reset").status_code == 200
        assert client.admin("PUT", "faults", json={"seed": 4, "rate_silent_drop": 0.5}).status_code == 200
        responses = client.entries(batch(*resources))
        assert all(r["status"] == "201 Created" for r in responses)
        stored = sorted(r["identifier_value"] for r in client.stored())
        assert client.admin("GET", "stats").json()["faults"] == {"silent_drop": len(resources) - len(stored)}
        return stored

    first = run()
    assert 0 < len(first) < len(resources)  # seed 4 drops some, keeps some
    assert run() == first
    # Turning transient entries on too moves none of the silent-drop draws.
    assert client.admin("POST", "reset").status_code == 200
    config = {"seed": 4, "rate_silent_drop": 0.5, "rate_entry_transient": 0.0001}
    assert client.admin("PUT", "faults", json=config).status_code == 200
    client.entries(batch(*resources))
    assert sorted(r["identifier_value"] for r in client.stored()) == first


@pytest.mark.parametrize("bad", [-0.1, 1.5, "0.5", True])
def test_silent_drop_rate_is_checked(client: Client, bad: Any) -> None:
    answer = client.admin("PUT", "faults", json={"rate_silent_drop": bad})
    assert answer.status_code == 400
    assert "rate_silent_drop" in answer.json()["detail"]
