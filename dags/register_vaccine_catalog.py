"""
### register_vaccine_catalog

Fetches the register's list of vaccines and batch numbers (every page of
`GET {base}/fhir/Medication`) into the pipeline database, where validation checks each record's
vaccine and batch against it. Runs daily at 01:30 (Stockholm), before `vaccinations_daily`; the
daily run refreshes the catalog itself when this DAG has not done so for a day.

It also checks, every day, when the register's **client secret** expires: the `nvr_api`
connection's extra field `client_secret_expires` (YYYY-MM-DD, the date the register gave with the
secret; a secret is valid one year). From 30 days before that date `check_client_secret` sends an
alert every day until the secret is rotated, and logs an error once it has expired (on the date
itself too). A missing or malformed date is a logged warning naming the field and the format; the
task stays green either way: the check must never cost the catalog.

**Params:** none (a run always fetches the register's current catalog).

**Connections:** `nvr_api` (the register), `vaxreport_db` (the pipeline database), optional
`vaxreport_alerts` (where alerts go; without it they are only logged).

**Produces:** the asset `vaxreport_vaccine_catalog`.

**When it fails:** the register could not be reached, refused the credentials (an expired client
secret: see above) or answered something unreadable. Read the log of `refresh_vaccine_catalog`.
The stored catalog stays as it was (a catalog is replaced in one transaction, never half), and the
daily run validates against it, so nothing is lost meanwhile. Clear the task once the register
answers again; re-running is always safe (it only replaces the stored copy).

**Rotating the secret:** put the new secret in the connection's password and the new date in
`client_secret_expires`; the next check is quiet again.

**Alerts:** a task that fails for good sends an alert (run id, task) through `vaxreport_alerts`; the
secret check sends its own. No alert carries personal data.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, dag, get_current_context, task

from vaxreport_airflow.alerts import VaxreportAlertNotifier

VACCINE_CATALOG = Asset(name="vaxreport_vaccine_catalog")


@dag(
    dag_id="register_vaccine_catalog",
    schedule="30 1 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="Europe/Stockholm"),
    catchup=False,
    max_active_runs=1,
    tags=["vaxreport", "nvr", "catalog"],
    default_args={
        "owner": "vaxreport",
        "retries": 3,
        "retry_delay": timedelta(minutes=10),
        "on_failure_callback": VaxreportAlertNotifier(),
    },
    doc_md=__doc__,
)
def register_vaccine_catalog():
    @task
    def check_client_secret() -> dict:
        """Warns 30 days ahead; never raises, whatever the date field holds."""
        from vaxreport_airflow.alerts import check_client_secret

        return check_client_secret()

    @task(outlets=[VACCINE_CATALOG])
    def refresh_vaccine_catalog() -> dict:
        from vaxreport.pipeline import refresh_catalog
        from vaxreport_airflow.hooks import runtime

        return {"products": refresh_catalog(runtime(get_current_context()["run_id"]))}

    check_client_secret()
    refresh_vaccine_catalog()


register_vaccine_catalog()
