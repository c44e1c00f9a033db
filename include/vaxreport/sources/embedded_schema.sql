-- The embedded journal-system database (SQLite): one row per registered vaccination.
-- Dates are text as the journal typed them; registered_at/updated_at are UTC 'YYYY-MM-DD HH:MM:SS'.
CREATE TABLE IF NOT EXISTS vaccinations (
    record_id         TEXT PRIMARY KEY,
    patient_id        TEXT,
    vaccine_name      TEXT,
    npl_id            TEXT,
    batch             TEXT,
    dose_number       INTEGER,
    vaccination_date  TEXT,
    caregiver_hsa_id  TEXT,
    caregiver_name    TEXT,
    care_unit_hsa_id  TEXT,
    care_unit_name    TEXT,
    status            TEXT NOT NULL DEFAULT 'completed',
    registered_at     TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_vaccinations_updated_at ON vaccinations (updated_at);
-- Test aid, not part of a real journal: the outcome each generated record must end in.
CREATE TABLE IF NOT EXISTS vaxreport_ground_truth (
    record_id       TEXT PRIMARY KEY,
    registered_day  TEXT NOT NULL,
    defect          TEXT NOT NULL,
    expected_state  TEXT NOT NULL,
    expected_code   TEXT
);
