"""Edge cases of the register client that the emulator cannot produce yet, with httpx.MockTransport."""

import json

import httpx
import pytest

from vaxreport.registry.client import (
    MAX_TOKEN_REFRESHES,
    RegistryAuthError,
    RegistryClient,
    RegistryError,
    RegistryProtocolError,
    RegistryUnavailable,
)
from vaxreport.settings import RegistrySettings

pytestmark = pytest.mark.unit
BASE = "http://127.0.0.1:9"
BUNDLE = {"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "POST"}}]}
ANSWER = {
    "resourceType": "Bundle",
    "type": "batch-response",
    "entry": [{"response": {"status": "201 Created", "location": "Immunization/1/_history/1"}}],
}


def settings(**kw):
    return RegistrySettings(
        base_url=BASE,
        client_id="c",
        client_secret="s",
        token_url=f"{BASE}/oauth2/token",
        max_attempts=kw.pop("max_attempts", 4),
        **kw,
    )


class Register:
    """A scripted register: answers FHIR calls from a list, tokens always."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.tokens = 0
        self.calls: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            self.tokens += 1
            return httpx.Response(
                200, json={"access_token": f"t{self.tokens}", "token_type": "Bearer", "expires_in": 300}
            )
        self.calls.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def client(register, **kw):
    sleeps: list[float] = []
    c = RegistryClient(settings(**kw), transport=httpx.MockTransport(register), sleep=sleeps.append)
    return c, sleeps


def test_429_is_retried_after_retry_after_with_the_same_request_id():
    reg = Register(httpx.Response(429, headers={"Retry-After": "3"}), httpx.Response(200, json=ANSWER))
    c, sleeps = client(reg)
    assert c.post_bundle(BUNDLE)[0]["response"]["status"] == "201 Created"
    assert sleeps == [3.0]
    assert reg.calls[0].headers["X-Request-ID"] == reg.calls[1].headers["X-Request-ID"]
    for header in ("X-Context-ID", "X-User-Agent", "Authorization"):
        assert reg.calls[0].headers[header]
    assert reg.calls[0].headers["Content-Type"] == "application/fhir+json"


def test_token_is_reused_and_refreshed_once_on_401():
    reg = Register(httpx.Response(200, json=ANSWER), httpx.Response(401), httpx.Response(200, json=ANSWER))
    c, _ = client(reg)
    c.post_bundle(BUNDLE)
    assert reg.tokens == 1
    c.post_bundle(BUNDLE)
    assert reg.tokens == 2
    assert reg.calls[-1].headers["Authorization"] == "Bearer t2"


def test_a_token_revoked_again_at_once_is_refreshed_again_a_bounded_number_of_times():
    # several workers share a revocation: the second request can meet the next one
    reg = Register(httpx.Response(401), httpx.Response(401), httpx.Response(200, json=ANSWER))
    c, _ = client(reg)
    assert c.post_bundle(BUNDLE)[0]["response"]["status"] == "201 Created"
    assert reg.tokens == 3
    endless = Register(*[httpx.Response(401)] * 10)
    c, _ = client(endless)
    with pytest.raises(RegistryAuthError):  # the caller sends the bundle again later, not as refused
        c.post_bundle(BUNDLE)
    assert endless.tokens == 1 + MAX_TOKEN_REFRESHES


def test_timeouts_and_5xx_back_off_then_give_up():
    reg = Register(httpx.ConnectError("refused"), httpx.Response(503), httpx.ReadTimeout("slow"), httpx.Response(502))
    c, sleeps = client(reg)
    with pytest.raises(RegistryUnavailable, match="after 4 attempts"):
        c.post_bundle(BUNDLE)
    assert len(sleeps) == 3
    assert all(0 < s <= 30 for s in sleeps)


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, content=b"<html>oops</html>"),
        httpx.Response(200, json={"resourceType": "Bundle", "type": "batch-response", "entry": []}),
        httpx.Response(200, json={"resourceType": "OperationOutcome"}),
    ],
)
def test_unreadable_answers_are_protocol_errors(answer):
    reg = Register(answer, answer, answer)
    c, _ = client(reg)
    with pytest.raises(RegistryProtocolError):
        c.post_bundle(BUNDLE)
    assert len({r.headers["X-Request-ID"] for r in reg.calls}) == 1  # asked again, as the same request


def test_an_unreadable_answer_is_asked_for_again_and_the_replay_read():
    reg = Register(httpx.Response(200, content=b'{"resourceType": "Bund'), httpx.Response(200, json=ANSWER))
    c, _ = client(reg)
    assert c.post_bundle(BUNDLE)[0]["response"]["status"] == "201 Created"
    assert reg.calls[0].headers["X-Request-ID"] == reg.calls[1].headers["X-Request-ID"]


def test_the_circuit_opens_after_failures_in_a_row_across_calls():
    reg = Register(*[httpx.Response(503)] * 4, httpx.Response(200, json=ANSWER))
    c, _ = client(reg, max_attempts=3, breaker_threshold=3)
    with pytest.raises(RegistryUnavailable):
        c.post_bundle(BUNDLE)  # 3 failures: retries spent, and the circuit is now open
    with pytest.raises(RegistryUnavailable, match="circuit open"):
        c.post_bundle(BUNDLE)
    assert len(reg.calls) == 3  # the open circuit sent nothing more


def test_429s_do_not_open_the_circuit():
    reg = Register(*[httpx.Response(429, headers={"Retry-After": "0"})] * 3, httpx.Response(200, json=ANSWER))
    c, _ = client(reg, max_attempts=4, breaker_threshold=2)
    assert c.post_bundle(BUNDLE)[0]["response"]["status"] == "201 Created"


def test_the_time_budget_stops_retries_that_would_outlast_it():
    reg = Register(httpx.Response(503, headers={"Retry-After": "120"}), httpx.Response(200, json=ANSWER))
    c, sleeps = client(reg, time_budget_s=60)
    with pytest.raises(RegistryUnavailable, match="time budget"):
        c.post_bundle(BUNDLE)
    assert sleeps == []


def test_whole_request_refusal_is_an_error_without_retry():
    reg = Register(
        httpx.Response(
            400, json={"resourceType": "OperationOutcome", "issue": [{"code": "too-costly", "diagnostics": "101"}]}
        )
    )
    c, sleeps = client(reg)
    with pytest.raises(RegistryError, match="HTTP 400"):
        c.post_bundle(BUNDLE)
    assert sleeps == []


@pytest.mark.parametrize("url", ["http://register.example.se", "http://10.0.0.5:8089", "ftp://127.0.0.1"])
def test_plain_http_only_to_loopback(url):
    with pytest.raises(RegistryError, match="refusing"):
        RegistryClient(RegistrySettings(base_url=url, client_id="c", client_secret="s", token_url=f"{url}/t"))


def test_https_and_loopback_are_allowed():
    RegistryClient(
        RegistrySettings(
            base_url="https://nvr.example.se",
            client_id="c",
            client_secret="s",
            token_url="https://nvr.example.se/oauth2/token",
        )
    ).close()
    RegistryClient(settings()).close()


def test_catalog_follows_next_links():
    page1 = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": {"id": "a"}}],
        "link": [{"relation": "next", "url": f"{BASE}/fhir/Medication?_count=1&_offset=1"}],
    }
    page2 = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {"id": "b"}}], "link": []}
    reg = Register(httpx.Response(200, content=json.dumps(page1)), httpx.Response(200, json=page2))
    c, _ = client(reg)
    assert [r["id"] for r in c.catalog(page_size=1)] == ["a", "b"]
    assert "_offset=1" in str(reg.calls[1].url)


def test_secret_is_not_in_the_settings_repr():
    assert "s3cret" not in repr(RegistrySettings(base_url=BASE, client_id="c", client_secret="s3cret", token_url=BASE))
