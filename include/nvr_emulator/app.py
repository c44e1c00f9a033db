"""The HTTP face of the emulator: FastAPI routes for token, FHIR, catalog, reports and admin calls.

Every ``/fhir`` call (and ``/reports/errors``) passes the same gate, in this order: bearer token (401), rate limit
(429), traceability headers (400), then X-Request-ID replay. In front of the gate sits fault
injection (:mod:`nvr_emulator.fault_middleware`, configured by ``config.faults`` and
``/admin/faults``): it decides each call's fault before the register sees it, so injected
faults look like the register's own answers (or like the network's failures).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from nvr_emulator import jsonio
from nvr_emulator.auth import TokenIssuer, TokenState, parse_basic, parse_bearer
from nvr_emulator.catalog import load_catalog, medication_resource
from nvr_emulator.config import EmulatorConfig, is_loopback
from nvr_emulator.fault_middleware import SCOPE_KEY, FaultMiddleware
from nvr_emulator.faults import Decision, FaultConfig, FaultConfigError, FaultInjector
from nvr_emulator.outcomes import FINDING_TEXTS, Problem, operation_outcome, problem
from nvr_emulator.ratelimit import RateLimiter
from nvr_emulator.register import Register
from nvr_emulator.replay import Replays
from nvr_emulator.rules import check_bundle
from nvr_emulator.store import Store, StoredAnswer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
ACCEPTED_CONTENT_TYPES = frozenset({FHIR_JSON, "application/json"})
#: Swedish national API conventions: request id per call, context id per run, calling system.
TRACE_HEADERS = ("X-Request-ID", "X-Context-ID")
_ECHOED = frozenset(name.lower().encode("latin-1") for name in TRACE_HEADERS)
REQUIRED_HEADERS = ("X-Request-ID", "X-Context-ID", "X-User-Agent")
UUID_HEADERS = frozenset({"X-Request-ID", "X-Context-ID"})
DEFAULT_PAGE, MAX_PAGE = 20, 100
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
FINDING_FIELDS = frozenset({"register_id", "code", "text", "found"})


class FhirError(Exception):
    """A whole-request refusal, answered as an OperationOutcome."""

    def __init__(self, status: int, outcome: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.outcome = outcome
        self.headers = headers or {}

    @classmethod
    def of(cls, found: Problem, headers: dict[str, str] | None = None) -> FhirError:
        """From a :class:`Problem`, keeping its status."""
        return cls(found.status, found.outcome(), headers)


@dataclass(frozen=True)
class CallContext:
    """Who is calling and under which request and context ids."""

    client_id: str
    request_id: str
    context_id: str
    user_agent: str


def _dumps(body: Any) -> bytes:
    return jsonio.dumps(body)


class EchoTraceHeaders:
    """Echo X-Request-ID and X-Context-ID on every answer, errors included.

    Plain ASGI rather than ``@app.middleware("http")``, which runs every call through an extra
    task and memory streams only to set two headers (small against a batch of 100, but free).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        echoed: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            if name in _ECHOED and name not in echoed:
                echoed[name] = value  # the first, as request.headers.get gives it
        echoed = {name: value for name, value in echoed.items() if value}
        if not echoed:
            await self.app(scope, receive, send)
            return

        async def send_echoing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(n, v) for n, v in message.get("headers", []) if n.lower() not in echoed]
                message = {**message, "headers": [*headers, *echoed.items()]}
            await send(message)

        await self.app(scope, receive, send_echoing)


def fhir_answer(status: int, body: dict[str, Any] | None, headers: dict[str, str] | None = None) -> StoredAnswer:
    """An answer with a FHIR JSON body (or none, for 204)."""
    if body is None:
        return StoredAnswer(status, None, b"", headers or {})
    return StoredAnswer(status, FHIR_JSON, _dumps(body), headers or {})


def _response(answer: StoredAnswer, extra: dict[str, str] | None = None) -> Response:
    return Response(
        content=answer.body,
        status_code=answer.status,
        media_type=answer.media_type,
        headers={**answer.headers, **(extra or {})},
    )


def _int_param(request: Request, name: str, default: int, minimum: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise FhirError(400, operation_outcome("error", "value", f"Parametern {name} har fel värde", expression=[name]))
    return value


def _iso_date(value: object) -> dt.date | None:
    """A strict ``YYYY-MM-DD`` calendar date, or None."""
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def _report_period(request: Request) -> tuple[dt.date, dt.date] | dict[str, Any]:
    """``from`` and ``to`` of ``/reports/errors``, or an OperationOutcome with one issue per bad one."""
    issues = []
    dates: dict[str, dt.date] = {}
    for name in ("from", "to"):
        values = request.query_params.getlist(name)
        if not values or not values[0].strip():
            issues.append(
                {
                    "severity": "error",
                    "code": "required",
                    "diagnostics": f"Parametern {name} saknas (ÅÅÅÅ-MM-DD)",
                    "expression": [name],
                }
            )
            continue
        day = _iso_date(values[0]) if len(values) == 1 else None
        if day is None:
            issues.append(
                {
                    "severity": "error",
                    "code": "value",
                    "diagnostics": f"Parametern {name} måste vara ett datum ÅÅÅÅ-MM-DD",
                    "expression": [name],
                }
            )
            continue
        dates[name] = day
    if not issues and dates["to"] <= dates["from"]:
        issues.append(
            {
                "severity": "error",
                "code": "value",
                "diagnostics": "Parametern to måste vara senare än from",
                "expression": ["from", "to"],
            }
        )
    if issues:
        return {"resourceType": "OperationOutcome", "issue": issues}
    return dates["from"], dates["to"]


def create_app(config: EmulatorConfig) -> FastAPI:
    """Build an emulator app with its own store, catalog, tokens and rate limiter."""
    catalog = load_catalog()
    store = Store(config.db)
    register = Register(
        store, catalog, config.dose_interval_days, config.current_date, findings_delay_days=config.findings_delay_days
    )
    tokens = TokenIssuer(config.client_id, config.client_secret, config.token_ttl)
    limiter = RateLimiter(config.rate_limit)
    replays = Replays(store)

    def apply_faults(faults: FaultConfig) -> None:
        tokens.ttl = faults.token_ttl if faults.token_ttl is not None else config.token_ttl

    def take_tokens(how: str) -> None:
        if how == "expire":
            tokens.expire_all()
        else:
            tokens.revoke_all()

    injector = FaultInjector(config.faults, on_config=apply_faults, on_revoke=take_tokens)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        store.close()

    app = FastAPI(
        title="NVR API emulator",
        description="Local emulator of the National Vaccination Register API (see REGISTRY.md).",
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.register = register
    app.state.tokens = tokens
    app.state.faults = injector

    app.add_middleware(EchoTraceHeaders)
    # Added last, so outermost of the app's own middleware: faults come before everything else.
    app.add_middleware(FaultMiddleware, injector=injector)

    @app.exception_handler(FhirError)
    async def fhir_error(_: Request, exc: FhirError) -> Response:
        return _response(fhir_answer(exc.status, exc.outcome, exc.headers))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """Unknown paths and methods under /fhir answer in FHIR, too."""
        if request.url.path.startswith("/fhir"):
            code = "not-found" if exc.status_code == 404 else "not-supported"
            outcome = operation_outcome("error", code, "Resursen eller metoden stöds inte")
            return _response(fhir_answer(exc.status_code, outcome, dict(exc.headers or {})))
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    def admit(request: Request) -> CallContext:
        """The gate of every /fhir call: token, rate limit, traceability headers."""
        client = tokens.check(parse_bearer(request.headers.get("Authorization")))
        if isinstance(client, TokenState):
            text = "Åtkomsttoken har gått ut" if client is TokenState.EXPIRED else "Åtkomsttoken saknas eller är okänd"
            error = "invalid_token" if request.headers.get("Authorization") else "invalid_request"
            raise FhirError(
                401,
                operation_outcome("error", client.value, text),
                {"WWW-Authenticate": f'Bearer error="{error}"'},
            )
        if not limiter.allow(client):
            raise FhirError(
                429,
                operation_outcome("error", "throttled", "För många anrop; försök igen om en sekund"),
                {"Retry-After": "1"},
            )
        issues = []
        for name in REQUIRED_HEADERS:
            value = request.headers.get(name, "").strip()
            if not value:
                issues.append(
                    {
                        "severity": "error",
                        "code": "required",
                        "diagnostics": f"Rubriken {name} saknas",
                        "expression": [name],
                    }
                )
            elif name in UUID_HEADERS and not _is_uuid(value):
                issues.append(
                    {
                        "severity": "error",
                        "code": "value",
                        "diagnostics": f"Rubriken {name} måste vara ett UUID",
                        "expression": [name],
                    }
                )
        if issues:
            raise FhirError(400, {"resourceType": "OperationOutcome", "issue": issues})
        return CallContext(
            client,
            request.headers["X-Request-ID"].strip(),
            request.headers["X-Context-ID"].strip(),
            request.headers["X-User-Agent"].strip(),
        )

    async def answer(request: Request, work: Callable[[], StoredAnswer], ctx: CallContext | None = None) -> Response:
        """Admit the call (unless done), then replay its stored answer or run ``work`` off the loop."""
        ctx = ctx or admit(request)
        result, replayed = await run_in_threadpool(replays.answer, ctx.client_id, ctx.request_id, work)
        log.debug(
            "%s %s by %s (%s): %s",
            request.method,
            request.url.path,
            ctx.client_id,
            ctx.user_agent,
            result.status,
        )
        return _response(result, {"X-Replayed": "true"} if replayed else None)

    # -- OAuth2 ---------------------------------------------------------------------------

    @app.post("/oauth2/token")
    async def token(request: Request) -> Response:
        """RFC 6749 client credentials; the client authenticates by HTTP Basic or form fields."""
        no_store = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        if "grant_type" not in form:
            return JSONResponse({"error": "invalid_request", "error_description": "grant_type saknas"}, 400, no_store)
        credentials = parse_basic(request.headers.get("Authorization"))
        if credentials is None and "client_id" in form:
            credentials = (form["client_id"], form.get("client_secret", ""))
        if credentials is None or not tokens.client_ok(*credentials):
            return JSONResponse(
                {"error": "invalid_client", "error_description": "Okänd klient eller fel hemlighet"},
                401,
                no_store | {"WWW-Authenticate": 'Basic realm="nvr"'},
            )
        if form["grant_type"] != "client_credentials":
            return JSONResponse(
                {"error": "unsupported_grant_type", "error_description": "Endast client_credentials"},
                400,
                no_store,
            )
        issued = tokens.issue(credentials[0])
        return JSONResponse(
            {"access_token": issued.access_token, "token_type": "Bearer", "expires_in": issued.expires_in},
            headers=no_store,
        )

    # -- FHIR -----------------------------------------------------------------------------

    @app.post("/fhir")
    async def post_bundle(request: Request) -> Response:
        """A batch Bundle of 1–100 entries; 200 with a batch-response whatever the entries' fate."""
        ctx = admit(request)
        media_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media_type not in ACCEPTED_CONTENT_TYPES:
            raise FhirError(
                415,
                operation_outcome("error", "not-supported", "Innehållstypen måste vara application/fhir+json"),
            )
        raw = await request.body()

        def work() -> StoredAnswer:
            try:
                body = jsonio.loads(raw)
            except ValueError:  # not JSON, not UTF-8
                body = None
            entries = check_bundle(body)
            if isinstance(entries, Problem):
                return fhir_answer(entries.status, entries.outcome())
            decision: Decision | None = request.scope.get(SCOPE_KEY)
            transient = frozenset(i for i in range(len(entries)) if decision and decision.entry_transient(i))
            # A transient entry is not processed, so it cannot be dropped as well.
            silent = frozenset(
                i for i in range(len(entries)) if decision and i not in transient and decision.entry_silent_drop(i)
            )
            result = register.process_batch(entries, transient, silent)
            if decision is not None:
                injector.record_entries(decision, sorted(transient), request.method, request.url.path)
                injector.record_entries(
                    decision, result.dropped, request.method, request.url.path, "silent_drop", ids=result.dropped_ids
                )
            return fhir_answer(200, result.bundle)

        return await answer(request, work, ctx)

    @app.get("/fhir/Medication")
    async def search_medication(request: Request) -> Response:
        """The vaccine catalog as a paged searchset (``_count`` ≤ 100, ``_offset``)."""

        def work() -> StoredAnswer:
            count = min(_int_param(request, "_count", DEFAULT_PAGE, 1), MAX_PAGE)
            offset = _int_param(request, "_offset", 0, 0)
            page = catalog.products[offset : offset + count]
            links = [{"relation": "self", "url": str(request.url)}]
            if offset + count < len(catalog.products):
                next_url = request.url.include_query_params(_count=count, _offset=offset + count)
                links.append({"relation": "next", "url": str(next_url)})
            bundle = {
                "resourceType": "Bundle",
                "id": str(uuid.uuid4()),
                "type": "searchset",
                "total": len(catalog.products),
                "link": links,
                "entry": [
                    {
                        "fullUrl": str(request.url_for("read_medication", medication_id=product.npl_id)),
                        "resource": medication_resource(product),
                        "search": {"mode": "match"},
                    }
                    for product in page
                ],
            }
            return fhir_answer(200, bundle)

        return await answer(request, work)

    @app.get("/fhir/Medication/{medication_id}")
    async def read_medication(request: Request, medication_id: str) -> Response:
        """One catalog product."""

        def work() -> StoredAnswer:
            product = catalog.product(medication_id)
            if product is None:
                return fhir_answer(404, operation_outcome("error", "not-found", "Okänt vaccin"))
            return fhir_answer(200, medication_resource(product))

        return await answer(request, work)

    @app.get("/fhir/Immunization")
    async def count_immunizations(request: Request) -> Response:
        """``date=geA&date=ltB&location.identifier=S|V&_summary=count``: a total, no entries."""

        def work() -> StoredAnswer:
            if request.query_params.get("_summary") != "count":
                return fhir_answer(
                    400,
                    operation_outcome("error", "not-supported", "Endast _summary=count stöds", expression=["_summary"]),
                )
            total = register.count(
                request.query_params.getlist("date"), request.query_params.get("location.identifier")
            )
            if isinstance(total, Problem):
                return fhir_answer(total.status, total.outcome())
            return fhir_answer(200, {"resourceType": "Bundle", "type": "searchset", "total": total})

        return await answer(request, work)

    @app.get("/fhir/Immunization/{immunization_id}")
    async def read_immunization(request: Request, immunization_id: str) -> Response:
        """The stored resource, current version."""

        def work() -> StoredAnswer:
            record = register.read(immunization_id)
            if record is None:
                return fhir_answer(404, problem("UNKNOWN-ID").outcome())
            return fhir_answer(200, record.resource, {"ETag": f'W/"{record.version}"'})

        return await answer(request, work)

    @app.delete("/fhir/Immunization/{immunization_id}")
    async def delete_immunization(request: Request, immunization_id: str) -> Response:
        """Delete one vaccination: 204, or 404 UNKNOWN-ID. The record is kept, marked, for audit."""

        def work() -> StoredAnswer:
            if register.delete(immunization_id):
                return fhir_answer(204, None)
            return fhir_answer(404, problem("UNKNOWN-ID").outcome())

        return await answer(request, work)

    # -- reports --------------------------------------------------------------------------

    @app.get("/reports/errors")
    async def report_errors(request: Request) -> Response:
        """The register's later findings found in [from, to): the weekly error file, as JSON."""

        def work() -> StoredAnswer:
            period = _report_period(request)
            if isinstance(period, dict):
                return fhir_answer(400, period)
            body = register.report(*period)
            return StoredAnswer(200, "application/json", _dumps(body), {})

        return await answer(request, work)

    # -- operations -----------------------------------------------------------------------

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Liveness for compose health checks; no authentication, no state."""
        return {"status": "ok"}

    def loopback_only(request: Request) -> None:
        if request.client is None or not is_loopback(request.client.host):
            raise StarletteHTTPException(403, "admin endpoints answer loopback clients only")

    @app.get("/admin/stats")
    async def admin_stats(request: Request) -> dict[str, Any]:
        """Counters for tests, with the faults injected by kind."""
        loopback_only(request)
        return await run_in_threadpool(register.stats) | {"faults": injector.injected()}

    async def fault_settings(request: Request) -> dict[str, Any]:
        try:
            return json.loads(await request.body())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StarletteHTTPException(400, f"not JSON: {exc}") from exc

    @app.get("/admin/faults")
    async def admin_faults(request: Request) -> dict[str, Any]:
        """The fault configuration, the request count, faults injected, the latest ones."""
        loopback_only(request)
        return injector.snapshot()

    @app.put("/admin/faults")
    async def admin_replace_faults(request: Request) -> dict[str, Any]:
        """Replace the fault configuration (absent fields: no fault); the sequence starts again."""
        loopback_only(request)
        try:
            injector.replace(FaultConfig.from_dict(await fault_settings(request)))
        except FaultConfigError as exc:
            raise StarletteHTTPException(400, str(exc)) from exc
        log.info("faults replaced: %s", injector.config)
        return injector.snapshot()

    @app.patch("/admin/faults")
    async def admin_change_faults(request: Request) -> dict[str, Any]:
        """Change some fault settings, keep the others and the sequence."""
        loopback_only(request)
        try:
            injector.update(FaultConfig.from_dict(await fault_settings(request), base=injector.config))
        except FaultConfigError as exc:
            raise StarletteHTTPException(400, str(exc)) from exc
        log.info("faults changed: %s", injector.config)
        return injector.snapshot()

    @app.post("/admin/tokens/revoke")
    async def admin_revoke_tokens(request: Request) -> dict[str, int]:
        """Forget every token: their next use answers 401 ``login``."""
        loopback_only(request)
        return {"revoked": tokens.revoke_all()}

    @app.post("/admin/tokens/expire")
    async def admin_expire_tokens(request: Request) -> dict[str, int]:
        """Let every token expire now: their next use answers 401 ``expired``."""
        loopback_only(request)
        return {"expired": tokens.expire_all()}

    @app.get("/admin/immunizations")
    async def admin_immunizations(request: Request) -> list[dict[str, Any]]:
        """Every record's current version, deleted ones included."""
        loopback_only(request)
        return [record.summary() for record in await run_in_threadpool(store.records)]

    @app.get("/admin/findings")
    async def admin_findings(request: Request) -> list[dict[str, Any]]:
        """Every finding in the order recorded, deleted records' too, whatever its date."""
        loopback_only(request)
        return [finding.summary() for finding in await run_in_threadpool(store.findings)]

    @app.post("/admin/findings", status_code=201)
    async def admin_add_finding(request: Request) -> dict[str, Any]:
        """Inject a finding about a stored record: ``{"register_id", "code", "text", "found"}``."""
        loopback_only(request)
        data = await fault_settings(request)
        if not isinstance(data, dict):
            raise StarletteHTTPException(400, "a finding must be a JSON object")
        unknown = sorted(set(data) - FINDING_FIELDS)
        if unknown:
            raise StarletteHTTPException(400, f"unknown field(s): {', '.join(unknown)}")
        register_id, code = data.get("register_id"), data.get("code")
        if not isinstance(register_id, str) or not register_id:
            raise StarletteHTTPException(400, "register_id must be a non-empty string")
        if not isinstance(code, str) or not code.strip():
            raise StarletteHTTPException(400, "code must be a non-empty string")
        text = data.get("text", FINDING_TEXTS.get(code))
        if not isinstance(text, str) or not text.strip():
            raise StarletteHTTPException(400, f"text must be a non-empty string (no default for code {code!r})")
        found = _iso_date(data["found"]) if "found" in data else config.current_date()
        if found is None:
            raise StarletteHTTPException(400, "found must be a date YYYY-MM-DD")
        record = await run_in_threadpool(store.get, register_id)
        if record is None:
            raise StarletteHTTPException(404, f"no stored record {register_id!r}")
        finding = await run_in_threadpool(register.add_finding, record, code, text, found)
        return finding.summary()

    @app.post("/admin/reset")
    async def admin_reset(request: Request) -> dict[str, str]:
        """Empty the store and the injected-fault counts (tokens and fault settings stay)."""
        loopback_only(request)
        await run_in_threadpool(store.reset)
        injector.clear_counts()
        return {"status": "reset"}

    return app


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
