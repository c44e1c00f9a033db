"""
### register_vaccine_catalog

Fetches the register's list of vaccines and batch numbers (every page of
`GET {base}/fhir/Medication`) into the pipeline database, where validation checks each record's
vaccine and batch against it. Runs daily before `vaccinations_daily`; the daily run refreshes the
catalog itself when this DAG has not done so for a day.

**Connections:** `nvr_api` (the register), `vaxreport_db` (the pipeline database).

**Produces:** the asset `vaxreport_vaccine_catalog`.

**When it fails:** the register could not be reached or answered something unreadable; the stored
catalog stays as it was (a catalog is replaced in one transaction, never half). Clear the task
once the register answers again.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, dag, get_current_context, task

VACCINE_CATALOG = Asset(name="vaxreport_vaccine_catalog")


@dag(
    dag_id="register_vaccine_catalog",
    schedule="30 1 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="Europe/Stockholm"),
    catchup=False,
    max_active_runs=1,
    tags=["vaxreport", "nvr", "catalog"],
    default_args={"owner": "vaxreport", "retries": 3, "retry_delay": timedelta(minutes=10)},
    doc_md=__doc__,
)
def register_vaccine_catalog():
    @task(outlets=[VACCINE_CATALOG])
    def refresh_vaccine_catalog() -> dict:
        from vaxreport.pipeline import refresh_catalog
        from vaxreport_airflow.hooks import runtime

        return {"products": refresh_catalog(runtime(get_current_context()["run_id"]))}

    refresh_vaccine_catalog()


register_vaccine_catalog()
