"""JSON in and out of the register: orjson's speed with the standard library's results.

Batches are the emulator's hot path (100 vaccinations a request, thousands of requests a
minute), so bodies are parsed and answers serialised with orjson. Where orjson and the
standard library would disagree, the standard library decides, so the contract does not
depend on which parser ran:

* integers of 19 or more digits: orjson reads those beyond 64 bits as floats, the standard
  library keeps them exact. Bodies with such a run of digits anywhere are parsed by the
  standard library (a cheap scan; real bundles have none).
* ``NaN``, ``Infinity`` and overflowing floats (``1e999``): orjson refuses them, the standard
  library reads them. They are parsed into :class:`NonFinite`, which orjson refuses to write,
  so :func:`dumps` writes them the standard library's way, as they came in.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

#: Digits mapped to ``0`` so one substring search finds any run of 19 digits.
_DIGITS = bytes.maketrans(b"0123456789", b"0" * 10)
_LONG_NUMBER = b"0" * 19


class NonFinite(float):
    """A ``NaN`` or infinite number from a request; orjson will not write it, the stdlib will."""


def _float(text: str) -> float:
    value = float(text)
    return value if math.isfinite(value) else NonFinite(value)


def _stdlib_loads(raw: bytes) -> Any:
    return json.loads(raw.decode("utf-8"), parse_float=_float, parse_constant=NonFinite)


def loads(raw: bytes) -> Any:
    """Parse a request body as the standard library would; ``ValueError`` when it is not JSON.

    (``json.JSONDecodeError`` and ``UnicodeDecodeError`` are both ``ValueError``.)
    """
    if _LONG_NUMBER not in raw.translate(_DIGITS):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # NaN and friends, lone surrogates, bad UTF-8: the standard library has the last word
    return _stdlib_loads(raw)


def loads_text(text: str) -> Any:
    """:func:`loads` for text (a stored resource)."""
    return loads(text.encode("utf-8"))


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, as ``json.dumps(value, ensure_ascii=False, separators=(",", ":"))``."""
    try:
        return orjson.dumps(value)
    except TypeError:  # NonFinite, integers beyond 64 bits, lone surrogates: the standard library
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def dumps_text(value: Any) -> str:
    """:func:`dumps` as text (for a TEXT column)."""
    try:
        return orjson.dumps(value).decode("utf-8")
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
