"""Keyed hashes of person ids: what logs, reports and the Airflow UI may show instead."""

from __future__ import annotations

import hashlib
import hmac
import os
from functools import lru_cache

_DEV_PEPPER = "vaxreport-dev-pepper"


def person_key(person_id: str) -> str:
    """16 hex characters of HMAC-SHA256; the pepper (VAXREPORT_PEPPER) keeps it from being reversed
    by hashing all ~100 000 birth-date/serial combinations."""
    return _keyed(os.environ.get("VAXREPORT_PEPPER", _DEV_PEPPER), person_id)


@lru_cache(maxsize=1 << 16)
def _keyed(pepper: str, person_id: str) -> str:
    # a person has many records in a large run: each is hashed once (the pepper is part of the key)
    return hmac.new(pepper.encode(), person_id.encode(), hashlib.sha256).hexdigest()[:16]
