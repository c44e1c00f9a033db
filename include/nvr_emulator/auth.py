"""OAuth2 client credentials: one configured client, bearer tokens kept in memory.

Tokens live only in this process on purpose: a restart invalidates them, as a key rotation
at the real register would, so clients must fetch a new token on 401.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING
from urllib.parse import unquote

if TYPE_CHECKING:
    from collections.abc import Callable


class TokenState(StrEnum):
    """Why a bearer token was refused; the values are the OperationOutcome issue codes."""

    UNKNOWN = "login"
    EXPIRED = "expired"


@dataclass(frozen=True)
class IssuedToken:
    """An access token and how long it lives."""

    access_token: str
    expires_in: int
    client_id: str


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """Client id and secret from an ``Authorization: Basic`` header (RFC 6749 2.3.1), else None."""
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        return None
    # RFC 6749 form-encodes id and secret before Base64; plain values pass through unchanged.
    return unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))


def parse_bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header, else None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class TokenIssuer:
    """Issues and checks tokens for the one client the emulator knows."""

    def __init__(
        self, client_id: str, client_secret: str, ttl: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._client_id = client_id
        self._client_secret = client_secret
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}

    def client_ok(self, client_id: str, client_secret: str) -> bool:
        """Constant-time comparison of both credentials."""
        id_ok = hmac.compare_digest(client_id.encode(), self._client_id.encode())
        secret_ok = hmac.compare_digest(client_secret.encode(), self._client_secret.encode())
        return id_ok and secret_ok

    def issue(self, client_id: str) -> IssuedToken:
        """A fresh token for an authenticated client."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            # Expired tokens are kept a while so their use answers "expired", not "unknown".
            self._tokens = {t: v for t, v in self._tokens.items() if v[1] > now - 86400}
            ttl = self.ttl
            self._tokens[token] = (client_id, now + ttl)
        return IssuedToken(token, ttl, client_id)

    def check(self, token: str | None) -> str | TokenState:
        """The client a token belongs to, or why it is refused."""
        if token is None:
            return TokenState.UNKNOWN
        with self._lock:
            found = self._tokens.get(token)
        if found is None:
            return TokenState.UNKNOWN
        client_id, expires_at = found
        if self._clock() >= expires_at:
            return TokenState.EXPIRED
        return client_id

    def revoke_all(self) -> int:
        """Forget every token (fault injection: revocation); their use answers 401 ``login``.
        Returns how many were live."""
        now = self._clock()
        with self._lock:
            live = sum(expires_at > now for _, expires_at in self._tokens.values())
            self._tokens.clear()
        return live

    def expire_all(self) -> int:
        """Let every live token expire now; their use answers 401 ``expired``. Returns how many."""
        now = self._clock()
        with self._lock:
            live = [token for token, (_, expires_at) in self._tokens.items() if expires_at > now]
            for token in live:
                self._tokens[token] = (self._tokens[token][0], now)
        return len(live)
