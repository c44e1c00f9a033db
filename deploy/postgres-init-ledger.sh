#!/usr/bin/env bash
# Runs once, after postgres-init.sql, when the postgres service starts on an empty volume: the ledger's
# own login role, owner of the database `vaxreport`. The password comes from LEDGER_DB_PASSWORD (.env)
# and is bound as a psql variable, never spliced into the SQL text.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v ledger_password="${LEDGER_DB_PASSWORD:?LEDGER_DB_PASSWORD is not set}" <<'SQL'
CREATE ROLE vaxreport LOGIN PASSWORD :'ledger_password';
ALTER DATABASE vaxreport OWNER TO vaxreport;
REVOKE CONNECT ON DATABASE vaxreport FROM PUBLIC;
GRANT CONNECT ON DATABASE vaxreport TO vaxreport;
SQL
