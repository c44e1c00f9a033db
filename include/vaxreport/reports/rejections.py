"""The daily rejection report: one CSV per caregiver and care unit, and an HTML index.

A care unit needs to find the record in its own journal and know what to fix: the journal's record
id, the date, the vaccine and batch, and the reason in Swedish and English. It does not need the
personnummer, so the report carries none (only the keyed hash), and can be shared as it is.
"""

from __future__ import annotations

import csv
import html
import re
from collections import defaultdict
from typing import TYPE_CHECKING

from vaxreport.validation.reasons import reason

if TYPE_CHECKING:
    from datetime import date
    from pathlib import Path

COLUMNS = (
    "record_id",
    "person_key",
    "vaccination_date",
    "vaccine",
    "npl_id",
    "batch",
    "dose_number",
    "rejected_by",
    "code",
    "reason_sv",
    "reason_en",
    "fix_sv",
    "fix_en",
)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name or "unknown")


def report_row(row: dict) -> dict:
    """One rejected ledger row as a care unit reads it: no personnummer, the reason and the fix."""
    text = reason(row.get("code"))
    return {
        "record_id": row["source_record_id"],
        "person_key": row["person_key"],
        "vaccination_date": row.get("vaccination_date") or "",
        "vaccine": row.get("vaccine_name") or "",
        "npl_id": row.get("npl_id") or "",
        "batch": row.get("batch") or "",
        "dose_number": "" if row.get("dose_number") is None else row["dose_number"],
        "rejected_by": "register" if row["state"] == "rejected_register" else "vaxreport",
        "code": row.get("code") or "",
        "reason_sv": row.get("reason_sv") or (text.sv if text else ""),
        "reason_en": row.get("reason_en") or (text.en if text else ""),
        "fix_sv": text.fix_sv if text else "",
        "fix_en": text.fix_en if text else "",
    }


def write(rows: list[dict], out_dir: Path, day: date) -> Path:
    """Write the report files for one day (replacing earlier ones) and return the index path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.csv"):
        old.unlink()
    groups: dict[tuple[str, str, str, str], list[dict]] = defaultdict(list)
    for row in rows:
        key = (
            row.get("caregiver_hsa_id") or "",
            row.get("caregiver_name") or "",
            row.get("care_unit_hsa_id") or "",
            row.get("care_unit_name") or "",
        )
        groups[key].append(report_row(row))
    links = []
    for (cg_id, cg_name, unit_id, unit_name), items in sorted(groups.items()):
        items.sort(key=lambda r: (r["code"], r["record_id"]))
        name = f"{_safe(cg_id)}__{_safe(unit_id)}.csv"
        with (out_dir / name).open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(items)
        links.append((cg_name, cg_id, unit_name, unit_id, len(items), name))
    index = out_dir / "index.html"
    body = "\n".join(
        f"<tr><td>{html.escape(cg)}</td><td>{html.escape(cgid)}</td><td>{html.escape(u)}</td>"
        f'<td>{html.escape(uid)}</td><td>{n}</td><td><a href="{html.escape(f)}">{html.escape(f)}</a></td></tr>'
        for cg, cgid, u, uid, n, f in links
    )
    index.write_text(
        '<!doctype html><html lang="sv"><meta charset="utf-8">'
        f"<title>Avvisade vaccinationer {day}</title>"
        f"<h1>Avvisade vaccinationer / Rejected vaccinations {day}</h1>"
        f"<p>{len(rows)} poster / records</p>"
        '<table border="1"><tr><th>Vårdgivare</th><th>HSA-id</th><th>Vårdenhet</th><th>HSA-id</th>'
        f"<th>Antal</th><th>Fil</th></tr>\n{body}</table></html>\n",
        encoding="utf-8",
    )
    return index
