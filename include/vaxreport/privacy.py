"""Keyed hashes of person ids: what logs, reports and the Airflow UI may show instead."""

from __future__ import annotations

import hashlib
import hmac
import os

_DEV_PEPPER = "vaxreport-dev-pepper"


def person_key(person_id: str) -> str:
    """16 hex characters of HMAC-SHA256; the pepper (VAXREPORT_PEPPER) keeps it from being reversed
    by hashing all ~100 000 birth-date/serial combinations."""
    pepper = os.environ.get("VAXREPORT_PEPPER", _DEV_PEPPER).encode()
    return hmac.new(pepper, person_id.encode(), hashlib.sha256).hexdigest()[:16]
