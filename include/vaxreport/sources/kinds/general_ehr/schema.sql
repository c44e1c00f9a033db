CREATE TABLE IF NOT EXISTS patients (
    id   INT AUTO_INCREMENT PRIMARY KEY,
    ssn  VARCHAR(32) NOT NULL,
    UNIQUE KEY uq_patients_ssn (ssn)
) CHARACTER SET utf8mb4;
CREATE TABLE IF NOT EXISTS units (
    id               INT AUTO_INCREMENT PRIMARY KEY,
    unit_hsa_id      VARCHAR(64) NOT NULL,
    unit_name        VARCHAR(255),
    provider_hsa_id  VARCHAR(64),
    provider_name    VARCHAR(255),
    UNIQUE KEY uq_units_hsa (unit_hsa_id)
) CHARACTER SET utf8mb4;
CREATE TABLE IF NOT EXISTS administrations (
    id              VARCHAR(64) PRIMARY KEY,
    patient_id      INT NOT NULL,
    unit_id         INT NOT NULL,
    drug_code       VARCHAR(40),
    drug_name       VARCHAR(255),
    lot             VARCHAR(120),
    dose_seq        INT,
    administered_at DATETIME NOT NULL,
    status          VARCHAR(32) NOT NULL,
    recorded_at     DATETIME NOT NULL,
    modified_at     DATETIME NOT NULL,
    KEY ix_administrations_modified (modified_at)
) CHARACTER SET utf8mb4;
