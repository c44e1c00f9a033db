"""Read the register's per-entry answers into ledger states.

Only an answer that clearly says "stored" (or "already stored, it is ours") marks a record
accepted; anything unreadable leaves it failed, to be sent again by the next run.
"""

from __future__ import annotations

import re

from vaxreport.ledger import schema as s
from vaxreport.validation.reasons import reason

NVR_ERROR_SYSTEM = "urn:vaxreport:nvr-error"
_LOCATION = re.compile(r"^Immunization/([^/]+)")
_PERSON_ID_SHAPED = re.compile(r"\d{6}(?:\d{2})?[-+]?\d{4}")


def scrub(text: str) -> str:
    """The register's free text goes into reports and logs: take out anything shaped like a
    personnummer before it does (the real register's texts are not known in advance)."""
    return _PERSON_ID_SHAPED.sub("[person-id]", text)


def _items(value: object, key: str) -> list:
    """`value[key]` as a list of dicts, whatever shape the answer really has."""
    found = value.get(key) if isinstance(value, dict) else None
    return [item for item in found if isinstance(item, dict)] if isinstance(found, list) else []


def _nvr_code(outcome: object) -> tuple[str | None, str]:
    for issue in _items(outcome, "issue"):
        for coding in _items(issue.get("details"), "coding"):
            if coding.get("system") == NVR_ERROR_SYSTEM and isinstance(coding.get("code"), str) and coding["code"]:
                diagnostics = issue.get("diagnostics")
                return coding["code"], diagnostics if isinstance(diagnostics, str) else ""
    return None, ""


def interpret(entry: dict) -> dict:
    """One batch-response entry → {state, code, reason_sv, reason_en, register_id}."""
    response = entry.get("response") if isinstance(entry, dict) else None
    if not isinstance(response, dict):
        return {"state": s.FAILED, "code": "UNREADABLE-ANSWER"}
    status_text = str(response.get("status") or "")
    try:
        status = int(status_text.split()[0])
    except (ValueError, IndexError):
        return {"state": s.FAILED, "code": "UNREADABLE-ANSWER"}
    code, diagnostics = _nvr_code(response.get("outcome"))
    diagnostics = scrub(diagnostics)
    match = _LOCATION.match(str(response.get("location") or ""))
    register_id = match.group(1) if match else None
    if status in (200, 201):
        if register_id is None:
            return {"state": s.FAILED, "code": "UNREADABLE-ANSWER"}
        state = s.DUPLICATE if code == "DUPLICATE" else s.ACCEPTED
        return {
            "state": state,
            "code": code,
            "register_id": register_id,
            "reason_sv": diagnostics or None,
            "reason_en": None,
        }
    if 400 <= status < 500 and status != 429 and code:
        known = reason(code)
        return {
            "state": s.REJECTED_REGISTER,
            "code": code,
            # our own text for codes we know: it is the one the report explains how to fix
            "reason_sv": known.sv if known else (diagnostics or None),
            "reason_en": known.en if known else None,
            "register_id": register_id,
        }
    return {"state": s.FAILED, "code": f"HTTP-{status}"}
