"""The embedded journal-system source: a SQLite database under `var/`, the default for a newcomer.

It is written by the synthetic generator and read by the daily extraction like any other source.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

import sqlalchemy as sa

from vaxreport.synthetic.generate import SYSTEM_PREFIX, Record, ground_truth_rows, iter_source_rows

if TYPE_CHECKING:
    from collections.abc import Iterator
    from datetime import date

    from vaxreport.window import DayWindow

SYSTEM_URI = "urn:vaxreport:source:embedded-journal"


def _sql(name: str) -> str:
    return resources.files("vaxreport.sources").joinpath(name).read_text()


def create_schema(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        script = "\n".join(ln for ln in _sql("embedded_schema.sql").splitlines() if not ln.lstrip().startswith("--"))
        for statement in script.split(";"):
            if statement.strip():
                conn.exec_driver_sql(statement)


def write_day(engine: sa.Engine, records: list[Record], day: date) -> None:
    """Replace the generated rows of `day`, so generating the same day twice changes nothing."""
    create_schema(engine)
    prefix = f"{SYSTEM_PREFIX}-{day:%Y%m%d}-%"
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM vaccinations WHERE record_id LIKE :p"), {"p": prefix})
        conn.execute(sa.text("DELETE FROM vaxreport_ground_truth WHERE registered_day = :d"), {"d": day.isoformat()})
        rows = list(iter_source_rows(records))
        if rows:
            cols = ", ".join(rows[0])
            params = ", ".join(f":{c}" for c in rows[0])
            conn.execute(sa.text(f"INSERT INTO vaccinations ({cols}) VALUES ({params})"), rows)
            conn.execute(
                sa.text(
                    "INSERT INTO vaxreport_ground_truth (record_id, registered_day, defect, expected_state,"
                    " expected_code) VALUES (:record_id, :registered_day, :defect, :expected_state,"
                    " :expected_code)"
                ),
                ground_truth_rows(records, day),
            )


def extract(engine: sa.Engine, window: DayWindow, chunk_size: int = 5000) -> Iterator[dict]:
    """Yield canonical records registered or changed in the window, streamed in chunks."""
    params = {"start": window.start_utc_text, "end": window.end_utc_text}
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True).execute(sa.text(_sql("embedded_extract.sql")), params)
        for part in result.mappings().partitions(chunk_size):
            for row in part:
                yield to_canonical(row)


def to_canonical(row) -> dict:
    """Map one journal row to the canonical record; values stay as the journal wrote them."""

    def text(value) -> str | None:
        if value is None:
            return None
        return str(value).strip()

    dose = row["dose_number"]
    try:  # an unreadable dose number is a missing one (DOSE-MISSING for COVID-19), never a crash
        dose = int(dose) if dose not in (None, "") else None
    except (TypeError, ValueError):
        dose = None
    return {
        "source": SYSTEM_URI,
        "source_record_id": str(row["record_id"]),
        "person_id": text(row["patient_id"]) or "",
        "vaccine_name": text(row["vaccine_name"]) or "",
        "npl_id": text(row["npl_id"]) or None,
        "batch": text(row["batch"]) or None,
        "dose_number": dose,
        "vaccination_date": text(row["vaccination_date"]) or "",
        "caregiver_hsa_id": text(row["caregiver_hsa_id"]) or "",
        "caregiver_name": text(row["caregiver_name"]) or "",
        "care_unit_hsa_id": text(row["care_unit_hsa_id"]) or "",
        "care_unit_name": text(row["care_unit_name"]) or "",
        "record_status": "entered-in-error" if row["status"] == "entered-in-error" else "completed",
        "registered_at": str(row["registered_at"]),
    }


def ground_truth(engine: sa.Engine, day: date) -> dict[str, tuple[str, str | None]]:
    """The expected (state, code) of each record generated for `day` (a test aid)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT record_id, expected_state, expected_code FROM vaxreport_ground_truth WHERE registered_day = :d"
            ),
            {"d": day.isoformat()},
        )
        return {r.record_id: (r.expected_state, r.expected_code) for r in rows}
