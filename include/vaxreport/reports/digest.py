"""The weekly rejection digest per caregiver: XLSX (a sheet per care unit) and an HTML version.

Aggregated counts first, details after, in the spirit of aggregate acknowledgement reports: a
caregiver sees at once which units have how many records to fix and why, then the records. The
journal's record id identifies the record; the digest carries no personnummer.
"""

from __future__ import annotations

import html
import re
from collections import Counter, defaultdict
from datetime import date, timedelta
from pathlib import Path

import sqlalchemy as sa

from vaxreport.ledger import schema as s
from vaxreport.reports.rejections import report_row

DETAIL_COLUMNS = (
    "record_id",
    "vaccination_date",
    "vaccine",
    "batch",
    "rejected_by",
    "code",
    "reason_sv",
    "reason_en",
    "fix_sv",
    "fix_en",
)


def week_bounds(day: date) -> tuple[date, date]:
    """The ISO week (Monday to Sunday) containing `day`, as [monday, next monday)."""
    monday = day - timedelta(days=day.weekday())
    return monday, monday + timedelta(days=7)


def open_rejections(ledger: sa.Engine, first: date, following: date) -> list[dict]:
    """Rejected records, still open (their latest version), reported in [first, following)."""
    rv = s.record_versions
    with ledger.connect() as conn:
        rows = conn.execute(
            sa.select(rv)
            .where(
                rv.c.state.in_([s.REJECTED_LOCAL, s.REJECTED_REGISTER]),
                rv.c.window_day >= first.isoformat(),
                rv.c.window_day < following.isoformat(),
            )
            .order_by(rv.c.caregiver_hsa_id, rv.c.care_unit_hsa_id, rv.c.code, rv.c.source_record_id)
        ).mappings()
        return [dict(r) for r in rows]


def _sheet_name(unit_name: str, unit_id: str, taken: set[str]) -> str:
    base = re.sub(r"[\[\]:*?/\\]", "_", unit_name or unit_id)[:28] or "unit"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base[:26]}~{n}"
    taken.add(name)
    return name


def write(rows: list[dict], out_dir: Path, week_label: str) -> list[Path]:
    """One XLSX and one HTML per caregiver; returns the files written."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    out_dir.mkdir(parents=True, exist_ok=True)
    by_caregiver: dict[tuple[str, str], dict[tuple[str, str], list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        caregiver = (row.get("caregiver_hsa_id") or "", row.get("caregiver_name") or "")
        unit = (row.get("care_unit_hsa_id") or "", row.get("care_unit_name") or "")
        by_caregiver[caregiver][unit].append(report_row(row))
    written = []
    for (cg_id, cg_name), units in sorted(by_caregiver.items()):
        book = Workbook()
        summary = book.active
        summary.title = "Sammanfattning"
        summary.append([f"Avvisade vaccinationer {week_label}: {cg_name} ({cg_id})"])
        summary["A1"].font = Font(bold=True)
        summary.append(["vårdenhet / care unit", "HSA-id", "kod / code", "antal / records"])
        for (unit_id, unit_name), details in sorted(units.items()):
            for code, n in sorted(Counter(d["code"] for d in details).items()):
                summary.append([unit_name, unit_id, code, n])
        taken = {"Sammanfattning"}
        for (unit_id, unit_name), details in sorted(units.items()):
            sheet = book.create_sheet(_sheet_name(unit_name, unit_id, taken))
            sheet.append([*DETAIL_COLUMNS])
            for cell in sheet[1]:
                cell.font = Font(bold=True)
            for d in details:
                sheet.append([d[c] for c in DETAIL_COLUMNS])
        stem = re.sub(r"[^A-Za-z0-9_-]", "_", cg_id or "unknown")
        xlsx = out_dir / f"{stem}.xlsx"
        book.save(xlsx)
        page = out_dir / f"{stem}.html"
        page.write_text(_html(week_label, cg_id, cg_name, units), encoding="utf-8")
        written += [xlsx, page]
    return written


def _html(week_label: str, cg_id: str, cg_name: str, units: dict) -> str:
    def table(header: list[str], body: list[list]) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>" for r in body)
        return f"<table><tr>{head}</tr>{rows}</table>"

    counts = [
        [name, uid, code, n]
        for (uid, name), details in sorted(units.items())
        for code, n in sorted(Counter(d["code"] for d in details).items())
    ]
    parts = [
        f"<h1>Avvisade vaccinationer {html.escape(week_label)}: {html.escape(cg_name)} ({html.escape(cg_id)})</h1>",
        "<h2>Sammanfattning / Summary</h2>",
        table(["vårdenhet", "HSA-id", "kod", "antal"], counts),
    ]
    for (uid, name), details in sorted(units.items()):
        parts += [
            f"<h2>{html.escape(name)} ({html.escape(uid)})</h2>",
            table(list(DETAIL_COLUMNS), [[d[c] for c in DETAIL_COLUMNS] for d in details]),
        ]
    return (
        '<!doctype html><html lang="sv"><meta charset="utf-8"><style>body{font-family:sans-serif}'
        "td,th{border:1px solid #ccc;padding:2px 6px}table{border-collapse:collapse}</style>"
        + "".join(parts)
        + "</html>\n"
    )


def write_week(ledger: sa.Engine, day: date, out_root: Path) -> dict:
    """The digest of the ISO week containing `day`, in `out_root/<YYYY-Www>/`; counts only."""
    first, following = week_bounds(day)
    year, week, _ = first.isocalendar()
    label = f"{year}-W{week:02d}"
    rows = open_rejections(ledger, first, following)
    files = write(rows, out_root / label, label)
    return {"week": label, "records": len(rows), "files": len(files), "folder": str(out_root / label)}
