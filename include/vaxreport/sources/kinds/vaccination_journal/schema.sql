CREATE TABLE IF NOT EXISTS vaccinations (
    id                    TEXT PRIMARY KEY,
    patient_ssn           TEXT,
    npl_id                TEXT,
    vaccine_name          TEXT,
    lot_number            TEXT,
    dose_number           SMALLINT,
    administered_on       DATE,
    care_provider_hsa_id  TEXT,
    care_provider_name    TEXT,
    care_unit_hsa_id      TEXT,
    care_unit_name        TEXT,
    voided                BOOLEAN NOT NULL DEFAULT FALSE,
    registered_at         TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_vaccinations_updated_at ON vaccinations (updated_at);
