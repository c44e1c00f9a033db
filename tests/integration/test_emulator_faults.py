"""The emulator's fault injection and crash safety, over real HTTP with plain httpx.

One test per fault kind shows what a client sees; then determinism by seed, changing faults at
run time, the crash window (processed, then the connection dropped) and its harmless resend,
the ``--faults`` start-up option, and a file store that survives SIGKILL mid-request.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import socket
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from tests import register_entries as entries
from tests.conftest import free_port, start_emulator

from nvr_emulator.config import EmulatorConfig
from nvr_emulator.server import run_in_thread

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration

TODAY = dt.date(2025, 6, 15)
CLIENT = ("vaxreport-dev", "dev-secret")
JOURNAL = "urn:vaxreport:fault-tests"
NVR_ERROR = "urn:vaxreport:nvr-error"
# Skatteverket's test personnummer (shared/data/skatteverket-testpersonnummer.txt), born January 2018.
PERSONS = (
    "201801012392",
    "201801022383",
    "201801032390",
    "201801042381",
    "201801052398",
    "201801062389",
    "201801072396",
    "201801082387",
    "201801092394",
    "201801102383",
)
FIRST_DAY = dt.date(2019, 1, 1)


def immunization(ident: str, person: str = PERSONS[0], day: dt.date = FIRST_DAY) -> dict[str, Any]:
    """A valid child-programme vaccination shaped like REGISTRY.md's entry."""
    return entries.immunization(JOURNAL, ident, person, day)


def batch(*idents: str, offset: int = 0) -> dict[str, Any]:
    """A batch creating one vaccination per identifier, each with its own (person, date) key."""
    entries = []
    for number, ident in enumerate(idents, start=offset):
        day = FIRST_DAY + dt.timedelta(days=number // len(PERSONS))
        resource = immunization(ident, PERSONS[number % len(PERSONS)], day)
        entries.append(
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "request": {"method": "POST", "url": "Immunization", "ifNoneExist": f"identifier={JOURNAL}|{ident}"},
                "resource": resource,
            }
        )
    return {"resourceType": "Bundle", "type": "batch", "entry": entries}


@dataclass
class Client:
    """Plain httpx with a token and the traceability headers."""

    http: httpx.Client
    token: str = ""
    context_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def fetch_token(self) -> dict[str, Any]:
        answer = self.http.post("/oauth2/token", data={"grant_type": "client_credentials"}, auth=CLIENT)
        assert answer.status_code == 200, answer.text
        self.token = answer.json()["access_token"]
        return answer.json()

    def headers(self, request_id: str | None = None) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.token}",
            "X-Request-ID": request_id or str(uuid.uuid4()),
            "X-Context-ID": self.context_id,
            "X-User-Agent": "vaxreport-fault-tests/0.1",
            "Content-Type": "application/fhir+json",
        }

    def post(self, body: Any, request_id: str | None = None, **kwargs: Any) -> httpx.Response:
        return self.http.post("/fhir", json=body, headers=self.headers(request_id), **kwargs)

    def catalog(self, **kwargs: Any) -> httpx.Response:
        return self.http.get("/fhir/Medication", params={"_count": 1}, headers=self.headers(), **kwargs)

    def faults(self, method: str = "PUT", **settings: Any) -> dict[str, Any]:
        answer = self.http.request(method, "/admin/faults", json=settings)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def stats(self) -> dict[str, Any]:
        return self.http.get("/admin/stats").json()

    def stored(self) -> list[str]:
        return sorted(r["identifier_value"] for r in self.http.get("/admin/immunizations").json() if not r["deleted"])


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    url, stop = run_in_thread(EmulatorConfig(rate_limit=0, today=TODAY))
    yield url
    stop()


@pytest.fixture
def client(emulator_url: str) -> Iterator[Client]:
    with httpx.Client(base_url=emulator_url, timeout=10) as http:
        http.put("/admin/faults", json={}).raise_for_status()
        http.post("/admin/reset").raise_for_status()
        client = Client(http)
        client.fetch_token()
        yield client
        http.put("/admin/faults", json={}).raise_for_status()


def assert_nothing_processed(client: Client) -> None:
    stats = client.stats()
    assert (stats["immunizations"], stats["posts"], stats["entries"]) == (0, 0, 0)


def issue(answer: httpx.Response) -> dict[str, Any]:
    body = answer.json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]


# -- one test per fault kind ------------------------------------------------------------------


def test_latency_delays_fhir_calls(client: Client) -> None:
    client.faults(latency_ms=250, latency_jitter_ms=100)
    started = time.monotonic()
    assert client.catalog().status_code == 200
    assert 0.25 <= time.monotonic() - started < 2
    assert client.stats()["faults"] == {"latency": 1}


def test_429_has_retry_after_and_no_effect(client: Client) -> None:
    client.faults(rate_429=1.0, retry_after=2)
    request_id = str(uuid.uuid4())
    answer = client.post(batch("t429"), request_id)
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "2"
    assert issue(answer)["code"] == "throttled"
    assert answer.headers["X-Request-ID"] == request_id
    assert_nothing_processed(client)
    assert client.stats()["faults"] == {"429": 1}
    client.faults()  # no faults: the refused request id is processed now
    assert client.post(batch("t429"), request_id).json()["entry"][0]["response"]["status"] == "201 Created"


def test_500_has_no_effect(client: Client) -> None:
    client.faults(rate_500=1.0)
    answer = client.post(batch("t500"))
    assert answer.status_code == 500
    assert "Retry-After" not in answer.headers
    assert issue(answer)["code"] == "exception"
    assert_nothing_processed(client)


def test_503_has_retry_after_and_no_effect(client: Client) -> None:
    client.faults(rate_503=1.0, retry_after=7)
    answer = client.post(batch("t503"))
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "7"
    assert issue(answer)["code"] == "transient"
    assert client.catalog().status_code == 503
    assert_nothing_processed(client)
    assert client.stats()["faults"] == {"503": 2}


def test_dropped_connection_is_a_transport_error_with_no_effect(client: Client) -> None:
    client.faults(rate_drop=1.0)
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        client.post(batch("drop"))
    with pytest.raises(httpx.TransportError):
        client.catalog()
    assert_nothing_processed(client)
    assert client.stats()["faults"] == {"drop": 2}


def test_hang_outlasts_the_client_timeout_and_has_no_effect(client: Client) -> None:
    client.faults(rate_hang=1.0, hang_seconds=5)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        client.post(batch("hang"), timeout=0.5)
    assert time.monotonic() - started < 1.5
    assert_nothing_processed(client)
    assert client.stats()["faults"] == {"hang": 1}


def test_hang_then_answer_takes_effect_after_the_client_gave_up(client: Client) -> None:
    client.faults(rate_hang=1.0, hang_seconds=1.0, hang_then="answer")
    request_id = str(uuid.uuid4())
    with pytest.raises(httpx.ReadTimeout):
        client.post(batch("slow"), request_id, timeout=0.3)
    deadline = time.monotonic() + 5
    while client.stored() != ["slow"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.stored() == ["slow"]
    client.faults()
    again = client.post(batch("slow"), request_id)  # the resend gets the late answer
    assert again.headers["X-Replayed"] == "true"
    assert again.json()["entry"][0]["response"]["status"] == "201 Created"


@pytest.mark.parametrize("kind", ["truncated", "not-json", "not-fhir", "empty-batch-response"])
def test_malformed_body_is_200_but_not_a_batch_response(client: Client, kind: str) -> None:
    client.faults(rate_malformed=1.0, malformed_kinds=[kind])
    answer = client.post(batch("bad-1", "bad-2"))
    assert answer.status_code == 200
    try:
        body = answer.json()
    except json.JSONDecodeError:
        body = None
    assert kind in {"truncated", "not-json"} or body is not None
    if body is not None:
        is_answer = body.get("type") == "batch-response" and len(body.get("entry", [])) == 2
        assert not is_answer
    assert_nothing_processed(client)
    recent = client.faults("GET")["recent"]
    assert [(r["fault"], r["malformed"]) for r in recent] == [("malformed", kind)]


def test_malformed_after_processing_truncates_the_real_answer(client: Client) -> None:
    client.faults(rate_malformed=1.0, malformed_kinds=["truncated"], malformed_processed=True)
    request_id = str(uuid.uuid4())
    answer = client.post(batch("cut"), request_id)
    assert answer.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        answer.json()
    assert answer.text.startswith('{"resourceType":"Bundle"')
    assert client.stored() == ["cut"]
    client.faults()
    again = client.post(batch("cut"), request_id)
    assert again.headers["X-Replayed"] == "true"
    assert again.text.startswith(answer.text)
    assert again.json()["entry"][0]["response"]["status"] == "201 Created"


def test_entry_transient_leaves_that_entry_unstored(client: Client) -> None:
    client.faults(seed=3, rate_entry_transient=0.4)
    idents = [f"e{i}" for i in range(8)]
    answer = client.post(batch(*idents))
    assert answer.status_code == 200
    responses = [entry["response"] for entry in answer.json()["entry"]]
    transient = [ident for ident, r in zip(idents, responses, strict=True) if r["status"] == "503 Service Unavailable"]
    created = [ident for ident, r in zip(idents, responses, strict=True) if r["status"] == "201 Created"]
    assert transient, responses  # seed 3 gives both kinds
    assert created, responses
    assert sorted(transient + created) == sorted(idents)
    for response in responses:
        if response["status"].startswith("503"):
            found = response["outcome"]["issue"][0]
            assert (found["severity"], found["code"]) == ("error", "transient")
            assert found["details"]["coding"] == [{"system": NVR_ERROR, "code": "TRANSIENT"}]
            assert "location" not in response
    assert client.stored() == sorted(created)
    stats = client.stats()
    assert stats["faults"] == {"entry_transient": len(transient)}
    assert stats["by_outcome"] == {"CREATED": len(created), "TRANSIENT": len(transient)}
    # The client sends the transient ones again, in a new request: now they are stored.
    client.faults()
    offsets = [idents.index(ident) for ident in transient]
    for ident, offset in zip(transient, offsets, strict=True):
        again = client.post(batch(ident, offset=offset))
        assert again.json()["entry"][0]["response"]["status"] == "201 Created"
    assert client.stored() == sorted(idents)


def test_token_revoked_after_n_requests_then_a_fresh_token_works(client: Client) -> None:
    client.faults(revoke_tokens_after_requests=2)
    assert [client.catalog().status_code for _ in range(2)] == [200, 200]
    refused = client.catalog()
    assert refused.status_code == 401
    assert issue(refused)["code"] == "login"
    client.fetch_token()
    assert [client.catalog().status_code for _ in range(3)] == [200, 200, 200]  # once, not every 2
    assert client.stats()["faults"] == {"tokens_revoked": 1}


def test_tokens_expire_every_n_requests(client: Client) -> None:
    client.faults(revoke_tokens_after_requests=2, revoke_tokens_repeat=True, revoke_tokens_as="expire")
    statuses = []
    for _ in range(7):  # requests 3, 5, 7 meet the expiry (the refused ones count, too)
        answer = client.catalog()
        statuses.append(answer.status_code)
        if answer.status_code == 401:
            assert issue(answer)["code"] == "expired"
            client.fetch_token()
    assert statuses == [200, 200, 401, 200, 401, 200, 401]
    assert client.stats()["faults"] == {"tokens_revoked": 3}


def test_admin_revoke_and_expire_tokens(client: Client) -> None:
    assert client.http.post("/admin/tokens/revoke").json()["revoked"] >= 1  # ours and earlier tests'
    assert issue(client.catalog())["code"] == "login"
    client.fetch_token()
    assert client.catalog().status_code == 200
    assert client.http.post("/admin/tokens/expire").json() == {"expired": 1}  # only the fresh one
    assert issue(client.catalog())["code"] == "expired"
    client.fetch_token()
    assert client.catalog().status_code == 200


def test_token_ttl_override_expires_tokens_mid_run(client: Client) -> None:
    client.faults("PATCH", token_ttl=1)
    assert client.fetch_token()["expires_in"] == 1
    assert client.catalog().status_code == 200
    time.sleep(1.1)
    assert issue(client.catalog())["code"] == "expired"
    client.faults("PATCH", token_ttl=None)
    assert client.fetch_token()["expires_in"] == 300


def test_outage_until_cleared(client: Client) -> None:
    client.faults("PATCH", outage=True, retry_after=30)
    answers = [client.post(batch("o1")), client.catalog(), client.catalog()]
    assert [a.status_code for a in answers] == [503, 503, 503]
    assert {a.headers["Retry-After"] for a in answers} == {"30"}
    assert client.fetch_token()  # the token endpoint is not part of the outage
    assert client.stats()["faults"] == {"outage": 3}
    assert_nothing_processed(client)
    client.faults("PATCH", outage=False)
    assert client.post(batch("o1")).status_code == 200
    assert client.stored() == ["o1"]


# -- determinism and run-time control ---------------------------------------------------------------


MIXED = {
    "seed": 11,
    "rate_429": 0.1,
    "rate_500": 0.1,
    "rate_503": 0.1,
    "rate_drop": 0.1,
    "rate_malformed": 0.1,
    "rate_entry_transient": 0.3,
}


def observe(client: Client, requests: int = 30) -> list[str]:
    """What the client sees for a fixed sequence of calls, one word per call."""
    seen = []
    for number in range(requests):
        try:
            if number % 2:
                answer = client.catalog()
            else:
                answer = client.post(batch(f"d{number}a", f"d{number}b", f"d{number}c", offset=3 * number))
        except httpx.TransportError as exc:
            seen.append(type(exc).__name__)
            continue
        try:
            body = answer.json()
        except json.JSONDecodeError:
            seen.append(f"{answer.status_code} unparseable")
            continue
        statuses = [e["response"]["status"][:3] for e in body.get("entry", []) if "response" in e]
        seen.append(f"{answer.status_code} {body.get('type') or body.get('resourceType')} {statuses}")
    return seen


def test_same_seed_and_requests_give_the_same_faults(client: Client) -> None:
    client.faults(**MIXED)
    first = observe(client)
    first_log = client.faults("GET")
    client.http.post("/admin/reset").raise_for_status()
    client.faults(**MIXED)  # PUT starts the sequence again
    second = observe(client)
    second_log = client.faults("GET")
    assert second == first
    assert second_log["recent"] == first_log["recent"]
    assert second_log["injected"] == first_log["injected"]
    assert set(first_log["injected"]) >= {"429", "500", "503", "drop", "malformed", "entry_transient"}
    assert first_log["requests"] == second_log["requests"] == 30
    client.http.post("/admin/reset").raise_for_status()
    client.faults(**(MIXED | {"seed": 12}))
    assert observe(client) != first


def test_admin_faults_get_put_patch_and_refusals(client: Client) -> None:
    shown = client.faults("GET")
    assert shown["config"]["rate_503"] == 0.0
    assert shown["config"]["malformed_kinds"] == ["truncated", "not-json", "not-fhir", "empty-batch-response"]
    assert shown["requests"] == 0
    client.faults(seed=5, rate_503=1.0)
    assert client.catalog().status_code == 503
    patched = client.faults("PATCH", rate_503=0.0, latency_ms=10)
    assert (patched["config"]["seed"], patched["config"]["latency_ms"], patched["requests"]) == (5, 10, 1)
    assert client.catalog().status_code == 200
    replaced = client.faults(rate_500=0.5)
    assert (replaced["config"]["seed"], replaced["config"]["latency_ms"], replaced["requests"]) == (0, 0, 0)
    for bad in ({"rate_503": 1.5}, {"rate_500": 0.6, "rate_503": 0.6}, {"no_such": 1}, {"seed": "7"}, [1]):
        refused = client.http.put("/admin/faults", json=bad)
        assert refused.status_code == 400, bad
        assert refused.json()["detail"]
    assert client.http.put("/admin/faults", content=b"{").status_code == 400
    assert client.faults("GET")["config"]["rate_500"] == 0.5  # refusals changed nothing


def test_drop_after_processing_takes_effect_and_the_resend_is_harmless(client: Client) -> None:
    client.faults(rate_drop_after_processing=1.0)
    request_id = str(uuid.uuid4())
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        client.post(batch("crash-1", "crash-2"), request_id)
    assert client.stored() == ["crash-1", "crash-2"]  # the client saw nothing, yet it happened
    stats = client.stats()
    assert (stats["posts"], stats["faults"]) == (1, {"drop_after_processing": 1})
    client.faults()
    again = client.post(batch("crash-1", "crash-2"), request_id)
    assert again.status_code == 200
    assert again.headers["X-Replayed"] == "true"
    assert [e["response"]["status"] for e in again.json()["entry"]] == ["201 Created", "201 Created"]
    after = client.stats()
    assert (after["immunizations"], after["posts"], after["entries"]) == (2, 1, 2)
    # Even a resend under a new request id stores nothing new: ifNoneExist finds both.
    fresh = client.post(batch("crash-1", "crash-2"))
    codes = [e["response"]["outcome"]["issue"][0]["details"]["coding"][0]["code"] for e in fresh.json()["entry"]]
    assert codes == ["DUPLICATE-IDENTIFIER"] * 2
    assert client.stored() == ["crash-1", "crash-2"]


def test_faults_at_start_up(tmp_path: Path) -> None:
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps({"seed": 9, "outage": True, "retry_after": 4}))
    emulator = start_emulator(tmp_path, "--rate-limit", "0", "--faults", f"@{faults}")
    try:
        with httpx.Client(base_url=emulator.base_url, timeout=10) as http:
            client = Client(http)
            client.fetch_token()
            refused = client.catalog()
            assert (refused.status_code, refused.headers["Retry-After"]) == (503, "4")
            assert client.faults("GET")["config"]["seed"] == 9
    finally:
        emulator.stop()


def non_loopback_address() -> str | None:
    """This machine's address on its default route (no packet is sent), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") or address == "0.0.0.0" else address  # noqa: S104


def test_fault_admin_answers_loopback_clients_only(tmp_path: Path) -> None:
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to call from")
    emulator = start_emulator(tmp_path, "--rate-limit", "0", "--host", "0.0.0.0", "--allow-remote")  # noqa: S104
    try:
        remote = emulator.base_url.replace("127.0.0.1", address)
        with httpx.Client(base_url=remote, timeout=10) as http:
            refused = [
                http.get("/admin/faults"),
                http.put("/admin/faults", json={"outage": True}),
                http.patch("/admin/faults", json={"outage": True}),
                http.post("/admin/tokens/revoke"),
                http.post("/admin/tokens/expire"),
                http.get("/admin/stats"),
            ]
            assert [a.status_code for a in refused] == [403] * 6
            client = Client(http)
            client.fetch_token()
            assert client.catalog().status_code == 200  # the API itself answers; no outage was set
        with httpx.Client(base_url=emulator.base_url, timeout=10) as local:
            assert local.get("/admin/faults").json()["config"]["outage"] is False
    finally:
        emulator.stop()


# -- the store survives SIGKILL -----------------------------------------------------------------------


REQUIRED_COLUMNS = (
    "id",
    "version",
    "identifier_system",
    "identifier_value",
    "person_id",
    "npl_id",
    "date",
    "lot",
    "caregiver",
    "careunit_system",
    "careunit",
    "status",
    "deleted",
    "resource",
    "last_updated",
)


@dataclass
class Sender:
    """Sends batches in a loop, resending each (same X-Request-ID) until it gets its answer."""

    base_url: str
    batch_size: int = 50
    done: list[str] = field(default_factory=list)
    in_flight: bool = False
    interrupted: int = 0  # requests cut off by a kill
    replayed: int = 0  # resends answered from the replay store (killed after it was written)
    partial: int = 0  # resends that found part of their batch stored (killed mid-batch)
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.base_url, timeout=10) as http:
                client = Client(http)
                number = 0
                while not self.stop.is_set():
                    idents = [f"k{number}-{i}" for i in range(self.batch_size)]
                    self.send(client, batch(*idents, offset=number * self.batch_size))
                    self.done.extend(idents)
                    number += 1
        except BaseException as exc:
            self.error = exc
            raise

    def send(self, client: Client, body: dict[str, Any]) -> None:
        request_id = str(uuid.uuid4())
        while True:
            try:
                if not client.token:
                    client.fetch_token()
                self.in_flight = True
                try:
                    answer = client.post(body, request_id)
                finally:
                    self.in_flight = False
            except httpx.ConnectError:
                time.sleep(0.02)  # down: being restarted
                continue
            except httpx.TransportError:
                self.interrupted += 1
                continue
            if answer.status_code == 401:  # a restart forgets tokens
                client.token = ""
                continue
            assert answer.status_code == 200, answer.text
            statuses = {e["response"]["status"] for e in answer.json()["entry"]}
            assert statuses <= {"201 Created", "200 OK"}, statuses
            self.replayed += answer.headers.get("X-Replayed") == "true"
            self.partial += statuses == {"201 Created", "200 OK"}
            return


def check_store(path: Path, expected: list[str]) -> None:
    """Complete rows, aliases pointing at records, no identifier twice, every sent one stored."""
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        rows = db.execute("SELECT * FROM immunizations").fetchall()
        for row in rows:
            assert all(row[c] is not None for c in REQUIRED_COLUMNS), dict(row)
            resource = json.loads(row["resource"])
            assert resource["id"] == row["id"]
            assert resource["identifier"][0]["value"] == row["identifier_value"]
            assert resource["meta"]["versionId"] == str(row["version"])
        ids = {row["id"] for row in rows}
        aliases = db.execute("SELECT system, value, immunization_id FROM identifiers").fetchall()
        assert {a["immunization_id"] for a in aliases} <= ids
        # Record and alias are written in one transaction: no record without its identifier.
        assert {(r["identifier_system"], r["identifier_value"], r["id"]) for r in rows} <= {tuple(a) for a in aliases}
        live = [(r["identifier_system"], r["identifier_value"]) for r in rows if not r["deleted"]]
        assert len(live) == len(set(live)), "an identifier is stored twice"
        assert sorted(value for _, value in live) == sorted(expected)
    finally:
        db.close()


@pytest.mark.slow
def test_file_store_survives_sigkill_mid_request(tmp_path: Path) -> None:
    db_path = tmp_path / "register.sqlite"
    port = free_port()
    args = ("--db", str(db_path), "--rate-limit", "0", "--today", TODAY.isoformat())
    emulator = start_emulator(tmp_path, *args, port=port)
    sender = Sender(emulator.base_url)
    thread = threading.Thread(target=sender.run, name="sender", daemon=True)
    thread.start()
    chance = random.Random(20250615)
    kills = mid_request = 0
    try:
        for _ in range(10):
            time.sleep(chance.uniform(0.05, 0.4))
            mid_request += sender.in_flight
            emulator.process.kill()  # SIGKILL: no shutdown, no rollback, no flush
            emulator.process.wait(10)
            kills += 1
            assert sender.error is None
            emulator = start_emulator(tmp_path, *args, port=port)
        time.sleep(0.3)
        sender.stop.set()
        thread.join(30)
        assert not thread.is_alive()
        assert sender.error is None
    finally:
        sender.stop.set()
        emulator.stop()
    print(
        f"{kills} kills, {mid_request} mid-request, {sender.interrupted} requests cut off, "
        f"{sender.partial} resends found their batch partly stored, {sender.replayed} were replayed, "
        f"{len(sender.done)} vaccinations sent"
    )
    assert kills >= 10
    assert mid_request >= kills // 2
    assert sender.interrupted >= kills // 2
    check_store(db_path, sender.done)
