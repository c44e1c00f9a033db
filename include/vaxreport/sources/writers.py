"""Write generated records into a journal-system database of any kind, in that kind's own schema.

This is the generator's side of each kind: the same `Record` becomes a flat Swedish export row, a
vaccination-journal row or three normalised EHR rows. Writing a day replaces that day's rows, so
generating the same day twice changes nothing.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from vaxreport.sources.mapping import Kind
from vaxreport.synthetic.generate import Record, ground_truth_rows

STOCKHOLM = ZoneInfo("Europe/Stockholm")
GROUND_TRUTH_DDL = """
CREATE TABLE IF NOT EXISTS vaxreport_ground_truth (
    record_id       VARCHAR(64) PRIMARY KEY,
    registered_day  VARCHAR(10) NOT NULL,
    defect          VARCHAR(40) NOT NULL,
    expected_state  VARCHAR(20) NOT NULL,
    expected_code   VARCHAR(40)
)
"""
# A vaccine no catalog knows, for journals without NPL-ids (the name is all they have).
UNKNOWN_VACCINE_NAME = "Imovax Polio"


def create_schema(engine: sa.Engine, kind: Kind) -> None:
    statements = [s for s in kind.sql("schema.sql").split(";") if s.strip()]
    with engine.begin() as conn:
        for statement in [*statements, GROUND_TRUTH_DDL]:
            conn.exec_driver_sql(statement)


def _utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def _local_text(text: str) -> str:
    return _utc(text).astimezone(STOCKHOLM).strftime("%Y-%m-%d %H:%M:%S")


def _ten_digit(pid: str, registered: datetime) -> str:
    """12-digit id to YYMMDD-NNNC, with '+' for a person aged 100 or more when registered."""
    if len(pid) != 12 or not pid.isdigit():
        return pid
    born_year = int(pid[:4])
    age_years = (
        registered.year - born_year - ((registered.month, registered.day) < (int(pid[4:6]), int(pid[6:8]) % 60 or 1))
    )
    return f"{pid[2:8]}{'+' if age_years >= 100 else '-'}{pid[8:]}"


def _legacy_rows(records: list[Record]) -> dict[str, list[dict]]:
    rows = []
    for r in records:
        rows.append(
            {
                "post_id": r.record_id,
                "personnr": _ten_digit(r.patient_id, _utc(r.registered_at).astimezone(STOCKHOLM)),
                "vaccin": UNKNOWN_VACCINE_NAME if r.defect == "unknown_vaccine" else r.vaccine_name,
                "satsnummer": r.batch,
                "dosnummer": None if r.dose_number is None else str(r.dose_number),
                "vaccinationsdatum": r.vaccination_date,
                "vardgivare_hsaid": r.caregiver_hsa_id,
                "vardgivare": r.caregiver_name,
                "vardenhet_hsaid": r.care_unit_hsa_id,
                "vardenhet": r.care_unit_name,
                "makulerad": "J" if r.status == "entered-in-error" else "N",
                "registrerad": _local_text(r.registered_at),
                "andrad": _local_text(r.updated_at),
            }
        )
    return {"journalexport": rows}


def _journal_rows(records: list[Record]) -> dict[str, list[dict]]:
    rows = []
    for r in records:
        rows.append(
            {
                "id": r.record_id,
                "patient_ssn": r.patient_id,
                "npl_id": r.npl_id,
                "vaccine_name": r.vaccine_name,
                "lot_number": r.batch,
                "dose_number": r.dose_number,
                "administered_on": date.fromisoformat(r.vaccination_date),
                "care_provider_hsa_id": r.caregiver_hsa_id,
                "care_provider_name": r.caregiver_name,
                "care_unit_hsa_id": r.care_unit_hsa_id,
                "care_unit_name": r.care_unit_name,
                "voided": r.status == "entered-in-error",
                "registered_at": _utc(r.registered_at),
                "updated_at": _utc(r.updated_at),
            }
        )
    return {"vaccinations": rows}


def _ehr_administrations(records: list[Record], patient_ids: dict[str, int], unit_ids: dict[str, int]) -> list[dict]:
    rows = []
    for r in records:
        given = datetime.combine(date.fromisoformat(r.vaccination_date), time(10), STOCKHOLM).astimezone(UTC)
        rows.append(
            {
                "id": r.record_id,
                "patient_id": patient_ids[r.patient_id],
                "unit_id": unit_ids[r.care_unit_hsa_id],
                "drug_code": r.npl_id,
                "drug_name": r.vaccine_name,
                "lot": r.batch,
                "dose_seq": r.dose_number,
                "administered_at": given.replace(tzinfo=None),
                "status": "entered-in-error" if r.status == "entered-in-error" else "given",
                "recorded_at": _utc(r.registered_at).replace(tzinfo=None),
                "modified_at": _utc(r.updated_at).replace(tzinfo=None),
            }
        )
    return rows


def _insert(conn: sa.Connection, table: str, rows: list[dict]) -> None:
    if rows:
        cols = ", ".join(rows[0])
        params = ", ".join(f":{c}" for c in rows[0])
        conn.execute(sa.text(f"INSERT INTO {table} ({cols}) VALUES ({params})"), rows)


def write_day(engine: sa.Engine, kind: Kind, records: list[Record], day: date, prefix: str | None = None) -> None:
    """Replace the generated rows of `day` (ids `<prefix>-<YYYYMMDD>-…`) and their ground truth."""
    create_schema(engine, kind)
    like = f"{prefix or kind.record_prefix}-{day:%Y%m%d}-%"
    main_table, id_column = {
        "legacy_export": ("journalexport", "post_id"),
        "vaccination_journal": ("vaccinations", "id"),
        "general_ehr": ("administrations", "id"),
    }[kind.name]
    with engine.begin() as conn:
        conn.execute(sa.text(f"DELETE FROM {main_table} WHERE {id_column} LIKE :p"), {"p": like})
        conn.execute(sa.text("DELETE FROM vaxreport_ground_truth WHERE record_id LIKE :p"), {"p": like})
        if kind.name == "legacy_export":
            _insert(conn, "journalexport", _legacy_rows(records)["journalexport"])
        elif kind.name == "vaccination_journal":
            _insert(conn, "vaccinations", _journal_rows(records)["vaccinations"])
        else:
            patient_ids = _ensure_ehr_patients(conn, {r.patient_id for r in records})
            unit_ids = _ensure_ehr_units(conn, records)
            _insert(conn, "administrations", _ehr_administrations(records, patient_ids, unit_ids))
        _insert(conn, "vaxreport_ground_truth", ground_truth_rows(records, day))


def _ensure_ehr_patients(conn: sa.Connection, ssns: set[str]) -> dict[str, int]:
    existing = {r.ssn: r.id for r in conn.execute(sa.text("SELECT id, ssn FROM patients"))}
    missing = sorted(ssns - existing.keys())
    _insert(conn, "patients", [{"ssn": ssn} for ssn in missing])
    return {r.ssn: r.id for r in conn.execute(sa.text("SELECT id, ssn FROM patients"))}


def _ensure_ehr_units(conn: sa.Connection, records: list[Record]) -> dict[str, int]:
    existing = {r.unit_hsa_id for r in conn.execute(sa.text("SELECT unit_hsa_id FROM units"))}
    new = {}
    for r in records:
        if r.care_unit_hsa_id not in existing:
            new[r.care_unit_hsa_id] = {
                "unit_hsa_id": r.care_unit_hsa_id,
                "unit_name": r.care_unit_name,
                "provider_hsa_id": r.caregiver_hsa_id,
                "provider_name": r.caregiver_name,
            }
    _insert(conn, "units", list(new.values()))
    return {r.unit_hsa_id: r.id for r in conn.execute(sa.text("SELECT id, unit_hsa_id FROM units"))}


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
