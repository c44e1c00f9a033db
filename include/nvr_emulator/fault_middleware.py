"""The HTTP side of fault injection: an ASGI middleware in front of every route.

For each ``/fhir`` call it asks the :class:`~nvr_emulator.faults.FaultInjector` for a
:class:`~nvr_emulator.faults.Decision` and then, before the register sees the request:
revokes tokens if due, sleeps the latency, and answers 429/500/503/outage, drops the
connection, hangs or answers a malformed body, all without processing. ``drop_after_processing``
(and ``malformed_processed``, and a hang that ends in ``answer``) let the request through first.
Calls that pass get the decision in ``scope["nvr.fault"]`` for the per-entry transient answers.

Dropping a connection: ASGI has no "close without answering", and an exception from the app
makes uvicorn answer 500. So the middleware closes the connection's transport itself; uvicorn
hands its ``RequestResponseCycle.receive`` to the app, and the cycle holds the transport. The
client reads EOF where the status line should be (httpx: ``RemoteProtocolError: Server
disconnected without sending a response``). Under a server without that attribute the fallback
sends a status line with ``Content-Length: 1`` and no body, which uvicorn-like servers end by
closing the connection: still a transport error for the client, but after a status line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

from nvr_emulator.outcomes import operation_outcome

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from nvr_emulator.faults import Decision, FaultInjector

log = logging.getLogger(__name__)

SCOPE_KEY = "nvr.fault"
FHIR_JSON = b"application/fhir+json"
_ECHOED = (b"x-request-id", b"x-context-id")
_DISCONNECT_WAIT_SECONDS = 2.0

#: Malformed bodies by kind; ``truncated`` is cut from the real answer when there is one.
MALFORMED_BODIES = {
    "truncated": b'{"resourceType":"Bundle","type":"batch-response","entry":[{"response":{"status":"201 Cre',
    "not-json": b"<html><head><title>502 Bad Gateway</title></head><body>upstream error</body></html>",
    "not-fhir": b'{"status":"ok","result":null}',
    "empty-batch-response": b'{"resourceType":"Bundle","type":"batch-response","entry":[]}',
}


def is_fhir_path(path: str) -> bool:
    """Whether fault injection applies to this path (the FHIR API, not token, health or admin)."""
    return path == "/fhir" or path.startswith("/fhir/")


class FaultMiddleware:
    """Injects the configured faults into ``/fhir`` calls (and latency into ``/oauth2/token``)."""

    def __init__(self, app: ASGIApp, injector: FaultInjector) -> None:
        self.app = app
        self.injector = injector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == "/oauth2/token":
            latency = self.injector.config.latency_ms / 1000.0
            if latency > 0:
                await asyncio.sleep(latency)
            await self.app(scope, receive, send)
            return
        if not is_fhir_path(path):
            await self.app(scope, receive, send)
            return

        decision = self.injector.next_request(scope["method"], path)
        scope[SCOPE_KEY] = decision
        if decision.latency > 0:
            await asyncio.sleep(decision.latency)
        fault = decision.fault
        if fault is None:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:  # the client went away while sending
            return
        config = decision.config
        if fault in {"429", "500", "503", "outage"}:
            await _refuse(scope, send, fault, config.retry_after)
        elif fault == "drop":
            await _drop(scope, receive, send)
        elif fault == "hang":
            await self._hang(scope, receive, send, body, decision)
        elif fault == "malformed":
            await self._malformed(scope, receive, send, body, decision)
        elif fault == "drop_after_processing":
            await _process(self.app, scope, receive, body)
            await _drop(scope, receive, send)
        else:  # pragma: no cover - decide() yields only the kinds above
            raise AssertionError(fault)

    async def _hang(self, scope: Scope, receive: Receive, send: Send, body: bytes, decision: Decision) -> None:
        config = decision.config
        if config.hang_then == "answer":
            # Not cut short when the client leaves: the request takes effect regardless.
            await asyncio.sleep(config.hang_seconds)
            await self.app(scope, _replaying(body, receive), send)
            return
        try:
            async with asyncio.timeout(config.hang_seconds):
                await _until_disconnect(receive)
        except TimeoutError:
            await _drop(scope, receive, send)

    async def _malformed(self, scope: Scope, receive: Receive, send: Send, body: bytes, decision: Decision) -> None:
        kind = decision.malformed or "truncated"
        content = MALFORMED_BODIES[kind]
        if decision.config.malformed_processed:
            real = await _process(self.app, scope, receive, body)
            if kind == "truncated" and len(real) > 1:
                content = real[: len(real) // 2]
        await _send(scope, send, 200, content, [(b"content-type", FHIR_JSON)])


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when the client disconnected first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the already read body once, then the connection's events."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _process(app: ASGIApp, scope: Scope, receive: Receive, body: bytes) -> bytes:
    """Run the request through the app, keep the answer from the client, return its body."""
    chunks: list[bytes] = []

    async def capture(message: Message) -> None:
        if message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, _replaying(body, receive), capture)
    return b"".join(chunks)


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _transport(receive: Receive) -> Any:
    """The connection's transport behind uvicorn's ``receive`` (see the module docstring).

    Duck-typed: uvloop's transports are not :class:`asyncio.BaseTransport` subclasses.
    """
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    if callable(getattr(transport, "close", None)) and callable(getattr(transport, "is_closing", None)):
        return transport
    return None


async def _drop(scope: Scope, receive: Receive, send: Send) -> None:
    """Close the connection without an answer."""
    transport = _transport(receive)
    if transport is None:
        log.warning("no transport to close for %s; ending the answer after its status line", scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1")]})
        return
    transport.close()
    # Wait until the server has noticed, so it does not answer "500" on our behalf.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_DISCONNECT_WAIT_SECONDS):
            await _until_disconnect(receive)


_REFUSALS = {
    "429": (429, "throttled", "För många anrop; försök igen senare"),
    "500": (500, "exception", "Internt fel i registret"),
    "503": (503, "transient", "Tjänsten är tillfälligt otillgänglig; försök igen senare"),
    "outage": (503, "transient", "Registret är stängt för underhåll; försök igen senare"),
}


async def _refuse(scope: Scope, send: Send, fault: str, retry_after: int) -> None:
    status, code, text = _REFUSALS[fault]
    headers = [(b"content-type", FHIR_JSON)]
    if status in {429, 503}:
        headers.append((b"retry-after", str(retry_after).encode()))
    body = json.dumps(operation_outcome("error", code, text), ensure_ascii=False, separators=(",", ":"))
    await _send(scope, send, status, body.encode("utf-8"), headers)


async def _send(scope: Scope, send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """An answer of the middleware's own, echoing X-Request-ID and X-Context-ID like the app."""
    echoed = [(name, value) for name, value in scope["headers"] if name in _ECHOED]
    all_headers: list[Any] = [*headers, *echoed, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
