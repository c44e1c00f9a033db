"""HTTP client for the register (NVR API): OAuth2 client credentials, traceability headers, retries.

What peers' users complain about shaped this: tokens that expire mid-run (the token is refreshed
before it expires and once more on a 401), 429s (honour Retry-After, back off with jitter) and
duplicates on retry (a retried call keeps its X-Request-ID, so the register answers it from its
replay store instead of processing it twice; entries are conditional creates as well).
"""

from __future__ import annotations

import ipaddress
import logging
import random
import threading
import time
import uuid
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from vaxreport import SYSTEM_NAME, __version__

if TYPE_CHECKING:
    from collections.abc import Callable

    from vaxreport.settings import RegistrySettings

log = logging.getLogger(__name__)

RETRY_STATUS = {429, 500, 502, 503, 504}
MAX_TOKEN_REFRESHES = 3  # per call: several threads may meet one revocation, each refreshing in turn
TOKEN_MARGIN_S = 30.0
FHIR_JSON = "application/fhir+json"


class RegistryError(RuntimeError):
    """The register could not be used; the message never carries personal data."""


class RegistryUnavailable(RegistryError):
    """Retries exhausted on transient failures: the records stay unsent and a later run resends them."""


class RegistryAuthError(RegistryError):
    """Still 401 after fresh tokens: tokens revoked faster than this call could use one. The
    bundle was not processed; its records go round again (a transient failure), not rejected."""


class RegistryProtocolError(RegistryError):
    """The register answered something this client cannot read; nothing is marked accepted."""


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, plain_http_hosts: tuple[str, ...] = ()) -> None:
    """Plain HTTP only to loopback (the emulator) or a host named in the connection's
    `plain_http_hosts` (the emulator inside a compose network); anything else must be HTTPS."""
    scheme = urlsplit(url).scheme
    if scheme == "https" or (scheme == "http" and (is_loopback(url) or urlsplit(url).hostname in plain_http_hosts)):
        return
    raise RegistryError(f"refusing {scheme or 'schemeless'} URL to a non-loopback host: use https")


class Pacer:
    """Spaces requests at least 1/rate seconds apart across threads, so a run with several bundles
    in flight stays under the register's rate limit instead of collecting 429s."""

    def __init__(self, per_second: float, sleep: Callable[[float], None] = time.sleep) -> None:
        self._interval = 1.0 / per_second if per_second > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()
        self._sleep = sleep

    def wait(self) -> None:
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self._interval
        if slot > now:
            self._sleep(slot - now)


class RegistryClient:
    """One client per run: one token cache, one X-Context-ID. Safe to share between the threads
    that send a run's bundles: the token is fetched under a lock and requests are paced."""

    def __init__(
        self,
        settings: RegistrySettings,
        context_id: str | None = None,
        on_token: Callable[[str], None] | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        check_url(settings.base_url, settings.plain_http_hosts)
        check_url(settings.token_url, settings.plain_http_hosts)
        self.settings = settings
        self.context_id = context_id or str(uuid.uuid4())
        self._on_token = on_token
        self._sleep = sleep
        self._token: str | None = None
        self._token_expires = 0.0
        self._http = httpx.Client(timeout=settings.timeout_s, transport=transport, verify=True)
        self._deadline = time.monotonic() + settings.time_budget_s
        self._consecutive_failures = 0
        self._failures_lock = threading.Lock()  # the sending threads count into one breaker
        self._token_lock = threading.Lock()
        self._pacer = Pacer(settings.max_requests_per_s)  # real time, also where tests fake the backoff sleep

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- tokens -------------------------------------------------------------------------------
    def _fetch_token(self) -> str:
        data = {"grant_type": "client_credentials"}
        if self.settings.scope:
            data["scope"] = self.settings.scope
        resp = self._send_with_retries(
            lambda: self._http.post(
                self.settings.token_url, data=data, auth=(self.settings.client_id, self.settings.client_secret)
            ),
            what="token",
        )
        if resp.status_code != 200:
            raise RegistryError(f"token request refused: HTTP {resp.status_code} {_oauth_error(resp)}")
        try:
            body = resp.json()
            token = body["access_token"]
            lifetime = float(body.get("expires_in", 300))
        except (ValueError, KeyError, TypeError) as exc:
            raise RegistryProtocolError("token answer unreadable") from exc
        if self._on_token:
            self._on_token(token)
        self._token = token
        self._token_expires = time.monotonic() + lifetime
        log.info("obtained access token valid %.0f s", lifetime)
        return token

    def _bearer(self) -> str:
        with self._token_lock:  # one fetch when several threads find the token stale at once
            if self._token is None or time.monotonic() > self._token_expires - TOKEN_MARGIN_S:
                return self._fetch_token()
            return self._token

    # --- requests -----------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        json_body: dict | bytes | None = None,
        params: dict | list | None = None,
        request_id: str | None = None,
    ) -> httpx.Response:
        """One logical call: retried on transient failures with the same X-Request-ID."""
        url = path_or_url if path_or_url.startswith("http") else f"{self.settings.base_url}{path_or_url}"
        check_url(url, self.settings.plain_http_hosts)
        rid = request_id or str(uuid.uuid4())
        refreshes = 0
        while True:
            token = self._bearer()
            headers = {
                "Authorization": f"Bearer {token}",
                "X-Request-ID": rid,
                "X-Context-ID": self.context_id,
                "X-User-Agent": f"{SYSTEM_NAME}/{__version__}",
                "Accept": FHIR_JSON,
            }
            kwargs: dict = {"headers": headers, "params": params}
            if json_body is not None:
                headers["Content-Type"] = FHIR_JSON
                kwargs["content"] = json_body if isinstance(json_body, bytes) else dumps(json_body)
            resp = self._send_with_retries(
                lambda kw=kwargs: self._paced(method, url, kw), what=f"{method} {urlsplit(url).path}"
            )
            if resp.status_code == 401 and refreshes < MAX_TOKEN_REFRESHES:
                refreshes += 1
                with self._token_lock:  # revoked or expired early: a new one, unless a thread has it
                    if self._token == token:
                        self._token = None
                log.warning("register answered 401; new token, try %d/%d", refreshes, MAX_TOKEN_REFRESHES)
                continue
            return resp

    def _paced(self, method: str, url: str, kwargs: dict) -> httpx.Response:
        self._pacer.wait()
        return self._http.request(method, url, **kwargs)

    def _send_with_retries(self, send: Callable[[], httpx.Response], what: str) -> httpx.Response:
        """Retry transient failures with backoff, within the run's time budget, unless the circuit
        is open: after `breaker_threshold` failures in a row the register is taken to be down and
        the run stops cleanly (its records fail and a later try sends them) instead of spending
        every retry of every bundle on it."""
        attempts = max(1, self.settings.max_attempts)
        for attempt in range(1, attempts + 1):
            if self._consecutive_failures >= self.settings.breaker_threshold:
                raise RegistryUnavailable(f"{what}: circuit open after {self._consecutive_failures} failures in a row")
            try:
                resp = send()
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                self._count_failure()
                self._wait_or_give_up(what, attempt, attempts, type(exc).__name__, None, exc)
                continue
            if resp.status_code in RETRY_STATUS:
                if resp.status_code != 429:  # a busy register is up; only errors count toward the breaker
                    self._count_failure()
                self._wait_or_give_up(
                    what, attempt, attempts, f"HTTP {resp.status_code}", resp.headers.get("Retry-After"), None
                )
                continue
            with self._failures_lock:
                self._consecutive_failures = 0
            return resp
        raise AssertionError("unreachable")

    def _count_failure(self) -> None:
        with self._failures_lock:  # `+=` on an attribute is a read and a write: two threads can lose one
            self._consecutive_failures += 1

    def _wait_or_give_up(
        self, what: str, attempt: int, attempts: int, problem: str, retry_after: str | None, exc: Exception | None
    ) -> None:
        if attempt == attempts:
            raise RegistryUnavailable(f"{what}: {problem} after {attempts} attempts") from exc
        delay = self._backoff(attempt, retry_after)
        if time.monotonic() + delay > self._deadline:
            raise RegistryUnavailable(f"{what}: {problem}; the time budget of this run is spent") from exc
        log.warning("%s: %s, retry %d/%d in %.1f s", what, problem, attempt, attempts - 1, delay)
        self._sleep(delay)

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        """Retry-After when the register says so; else exponential with full jitter."""
        if retry_after:  # the register knows best: wait as long as it asks, up to its own limit
            try:
                return min(max(float(retry_after), 0.0), self.settings.retry_after_max_s)
            except ValueError:
                pass
        ceiling = min(self.settings.backoff_max_s, self.settings.backoff_base_s * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)

    # --- operations ---------------------------------------------------------------------------
    def post_bundle(self, bundle: dict, request_id: str | None = None) -> list[dict]:
        """Send one batch Bundle; return the response entries, one per request entry, in order.

        An answer that cannot be read is asked for again with the same X-Request-ID: the register
        replays what it answered the first time instead of processing the bundle twice. If it stays
        unreadable the bundle fails (and is sent again later); it is never taken as accepted.
        """
        return self.post_bundle_body(dumps(bundle), len(bundle["entry"]), request_id)

    def post_bundle_body(self, body: bytes, entries: int, request_id: str | None = None) -> list[dict]:
        """`post_bundle` for a bundle already serialised (once, by the caller)."""
        rid = request_id or str(uuid.uuid4())
        attempts = max(1, min(3, self.settings.max_attempts))
        for attempt in range(1, attempts + 1):
            resp = self.request("POST", "/fhir", json_body=body, request_id=rid)
            if resp.status_code == 401:
                raise RegistryAuthError(f"bundle refused: HTTP 401 {_issue_summary(resp)}")
            if resp.status_code != 200:
                raise RegistryError(f"bundle refused: HTTP {resp.status_code} {_issue_summary(resp)}")
            try:
                return _batch_entries(resp, entries)
            except RegistryProtocolError as exc:
                if attempt == attempts:
                    raise
                delay = self._backoff(attempt, None)
                log.warning("bundle answer unreadable (%s); asking again in %.1f s", exc, delay)
                self._sleep(delay)
        raise AssertionError("unreachable")

    def catalog(self, page_size: int = 50) -> list[dict]:
        """All Medication resources of the vaccine catalog, following `next` links."""
        resources: list[dict] = []
        url: str | None = "/fhir/Medication"
        params: dict | None = {"_count": page_size}
        pages = 0
        while url:
            pages += 1
            if pages > 1000:
                raise RegistryProtocolError("catalog paging does not end")
            body = self._read_page(url, params)
            resources.extend(e["resource"] for e in _dicts(body.get("entry")) if isinstance(e.get("resource"), dict))
            url = next((link.get("url") for link in _dicts(body.get("link")) if link.get("relation") == "next"), None)
            params = None  # the next link carries its own query
        return resources

    def count(self, first: str, following: str, care_unit_hsa_id: str) -> int | None:
        """The register's own count of a care unit's vaccinations in [first, following), or None
        where the register does not offer the search (a real register may not)."""
        resp = self.request(
            "GET",
            "/fhir/Immunization",
            params=[
                ("date", f"ge{first}"),
                ("date", f"lt{following}"),
                ("location.identifier", f"urn:oid:1.2.752.29.4.19|{care_unit_hsa_id}"),
                ("_summary", "count"),
            ],
        )
        if resp.status_code != 200:
            return None
        try:
            total = resp.json().get("total")
        except (ValueError, AttributeError):
            return None
        return total if isinstance(total, int) else None

    def findings(self, first: str, following: str) -> list[dict]:
        """The register's later findings (the electronic weekly error file) for [first, following)."""
        resp = self.request("GET", "/reports/errors", params={"from": first, "to": following})
        if resp.status_code != 200:
            raise RegistryError(f"findings refused: HTTP {resp.status_code}")
        try:
            rows = resp.json().get("rows")
        except (ValueError, AttributeError) as exc:
            raise RegistryProtocolError("findings answer unreadable") from exc
        return _dicts(rows)

    def _read_page(self, url: str, params: dict | None) -> dict:
        """One searchset page; an unreadable one is fetched again (a GET changes nothing)."""
        attempts = max(1, min(3, self.settings.max_attempts))
        for attempt in range(1, attempts + 1):
            resp = self.request("GET", url, params=params)
            if resp.status_code != 200:
                raise RegistryError(f"catalog refused: HTTP {resp.status_code}")
            try:
                body = resp.json()
                if isinstance(body, dict) and body.get("resourceType") == "Bundle":
                    return body
            except ValueError:
                pass
            if attempt < attempts:
                self._sleep(self._backoff(attempt, None))
        raise RegistryProtocolError("catalog page is not a Bundle")


def dumps(body: dict) -> bytes:
    """JSON once, as UTF-8 bytes: orjson where installed (several times faster on big bundles)."""
    try:
        import orjson
    except ImportError:
        import json

        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return orjson.dumps(body)


def _dicts(value: object) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _batch_entries(resp: httpx.Response, expected: int) -> list[dict]:
    try:
        body = resp.json()
    except ValueError as exc:
        raise RegistryProtocolError("bundle answer is not JSON") from exc
    if not isinstance(body, dict):
        raise RegistryProtocolError("bundle answer is not a JSON object")
    entries = body.get("entry")
    if (
        body.get("resourceType") != "Bundle"
        or body.get("type") != "batch-response"
        or not isinstance(entries, list)
        or len(entries) != expected
    ):
        raise RegistryProtocolError("bundle answer is not a batch-response with one entry per request")
    return entries


def _oauth_error(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("error", ""))
    except ValueError:
        return ""


def _issue_summary(resp: httpx.Response) -> str:
    try:
        issues = resp.json().get("issue") or []
        from vaxreport.registry.outcomes import scrub

        return scrub("; ".join(f"{i.get('code')}: {i.get('diagnostics', '')}" for i in issues))[:300]
    except (ValueError, AttributeError):
        return ""
