-- Runs once, when the postgres service starts on an empty volume (docker-entrypoint-initdb.d).
-- The pipeline's ledger (connection vaxreport_db) lives beside Airflow's metadata database;
-- postgres-init-ledger.sh then hands it to its own role, so the pipeline never logs in as the superuser.
CREATE DATABASE vaxreport;
