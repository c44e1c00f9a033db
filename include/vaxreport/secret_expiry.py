"""When the register's client secret runs out, known a month ahead.

The register issues a client secret valid for one year; once it lapses every token request fails
and nothing is reported until someone rotates it. The date is written into the `nvr_api`
connection's extra as `client_secret_expires` (YYYY-MM-DD, the day the register says it expires)
when the secret is set, and a daily check warns from 30 days before. On the expiry day itself the
secret is treated as expired: the register does not say at what hour of that day it stops.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

FIELD = "client_secret_expires"
EXPECTED_FORMAT = "YYYY-MM-DD"
WARN_DAYS = 30
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

OK, EXPIRING, EXPIRED, MISSING, MALFORMED = "ok", "expiring", "expired", "missing", "malformed"


@dataclass(frozen=True)
class SecretExpiry:
    status: str
    days_left: int | None = None
    expires: date | None = None

    @property
    def should_alert(self) -> bool:
        """Every day from 30 days before expiry until the secret is rotated (the date moves on)."""
        return self.status in (EXPIRING, EXPIRED)


def check(extra: dict | None, today: date) -> SecretExpiry:
    """Read `client_secret_expires` from a connection's extra; never raises (a bad date must not
    cost a night's report, it is a configuration warning)."""
    raw = (extra or {}).get(FIELD)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return SecretExpiry(MISSING)
    text = str(raw).strip()
    if not _ISO_DATE.fullmatch(text):
        return SecretExpiry(MALFORMED)
    try:
        expires = date.fromisoformat(text)
    except ValueError:  # 2027-02-30
        return SecretExpiry(MALFORMED)
    days_left = (expires - today).days
    if days_left <= 0:
        status = EXPIRED
    elif days_left <= WARN_DAYS:
        status = EXPIRING
    else:
        status = OK
    return SecretExpiry(status, days_left, expires)


def log_line(expiry: SecretExpiry, conn_id: str) -> str:
    """What the daily check logs (at warning or error level for anything but ok)."""
    if expiry.status == MISSING:
        return (
            f"connection {conn_id} has no extra field {FIELD!r}: add the date the register's client secret expires"
            f" ({EXPECTED_FORMAT}) to be warned {WARN_DAYS} days before it does"
        )
    if expiry.status == MALFORMED:
        return (
            f"connection {conn_id}: extra field {FIELD!r} is not a date in the format {EXPECTED_FORMAT};"
            " no expiry warning until it is fixed"
        )
    if expiry.expires is None:  # not reached: every other status carries the date
        return f"connection {conn_id}: {FIELD} unknown"
    if expiry.status == EXPIRED:
        return (
            f"the register client secret of connection {conn_id} EXPIRED on {expiry.expires.isoformat()}: token"
            f" requests will fail; rotate it (new password and {FIELD})"
        )
    if expiry.status == EXPIRING:
        return (
            f"the register client secret of connection {conn_id} expires on {expiry.expires.isoformat()}"
            f" ({expiry.days_left} days left); rotate it (new password and {FIELD})"
        )
    return f"register client secret of connection {conn_id} valid until {expiry.expires.isoformat()}"
