CREATE TABLE IF NOT EXISTS journalexport (
    post_id            TEXT PRIMARY KEY,
    personnr           TEXT,
    vaccin             TEXT,
    satsnummer         TEXT,
    dosnummer          TEXT,
    vaccinationsdatum  TEXT,
    vardgivare_hsaid   TEXT,
    vardgivare         TEXT,
    vardenhet_hsaid    TEXT,
    vardenhet          TEXT,
    makulerad          TEXT NOT NULL DEFAULT 'N',
    registrerad        TEXT NOT NULL,
    andrad             TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_journalexport_andrad ON journalexport (andrad);
