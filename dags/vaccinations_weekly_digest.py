"""
### vaccinations_weekly_digest

Writes the weekly rejection digest per caregiver, for the ISO week before the run (Monday to
Sunday, by the day records were reported): an XLSX with a summary sheet of counts per care unit
and error code, then a sheet per care unit with each record to fix (record id, vaccination date,
vaccine, batch, reason in Swedish and English, how to fix it), and the same as HTML, under
`var/reports/digest/<YYYY-Www>/`. It carries no personnummer. Runs Mondays at 06:00 (Stockholm).

**Params**

| name | meaning | default |
| --- | --- | --- |
| `day` | any day (YYYY-MM-DD) of the week to digest | none: the week before the run's logical date |

**Connections:** `vaxreport_db` (read only), optional `vaxreport_alerts` (alerts).

**When it fails:** the ledger could not be read or the reports folder written; the log of
`write_rejection_digest` says which. Fix it and clear the task, or trigger the DAG with `day` for
any past week: the digest only reads the ledger and rewrites that week's files, so a re-run is
always safe.

**Alerts:** a task that fails for good sends an alert (run id, task) through `vaxreport_alerts`; without
that connection it is only logged. No alert carries personal data.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from vaxreport_airflow.alerts import VaxreportAlertNotifier


@dag(
    dag_id="vaccinations_weekly_digest",
    schedule="0 6 * * 1",
    start_date=pendulum.datetime(2026, 1, 1, tz="Europe/Stockholm"),
    catchup=False,
    max_active_runs=1,
    tags=["vaxreport", "reports", "weekly"],
    default_args={
        "owner": "vaxreport",
        "retries": 2,
        "retry_delay": timedelta(minutes=10),
        "on_failure_callback": VaxreportAlertNotifier(),
    },
    params={"day": Param(None, type=["null", "string"], format="date", description="Any day of the week to digest")},
    doc_md=__doc__,
)
def vaccinations_weekly_digest():
    @task
    def write_rejection_digest() -> dict:
        from datetime import date

        from vaxreport.reports import digest
        from vaxreport.settings import reports_dir
        from vaxreport.window import STOCKHOLM
        from vaxreport_airflow.hooks import runtime

        context = get_current_context()
        named = context["params"].get("day")
        day = (
            date.fromisoformat(named)
            if named
            else context["logical_date"].astimezone(STOCKHOLM).date() - timedelta(days=7)
        )
        result = digest.write_week(runtime(context["run_id"]).ledger(), day, reports_dir() / "digest")
        return {k: v for k, v in result.items() if k != "folder"}

    write_rejection_digest()


vaccinations_weekly_digest()
