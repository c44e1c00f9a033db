"""
### vaccinations_monthly_reconciliation

Proves, once a month, that every vaccination the journal systems say was given is in the register
or explained. Runs on the 2nd at 04:00 (Stockholm) for the **previous calendar month** by
vaccination date; the month is computed from the run's logical date (Airflow 3's cron timetable
gives no interval), or named with the `month` param for a manual run or backfill.

1. `apply_register_findings`: the register's later findings (`GET /reports/errors`) move the
   affected records from accepted to rejected by the register, so they reach the next rejection
   report.
2. `reconcile_month`: every source record given in the month, read afresh (late registrations
   included), in exactly one class (accepted, duplicate, rejected_local, rejected_register,
   excluded, voided, failed_or_pending, **missing**); the register's own count per care unit set
   against what it should hold; the HTML report with plots and a CSV per table under
   `var/reports/reconciliation/<YYYY-MM>/`.

**Params**

| name | meaning | default |
| --- | --- | --- |
| `month` | the month to reconcile (YYYY-MM) | none: the calendar month before the run's logical date |
| `threshold` | tolerated unexplained difference against the register's counts (records) | `0` |

**Fails visibly** (the task turns red, the run note and the log say why) when any record is
missing, when the unexplained difference against the register exceeds `threshold`, or when a source
could not be read. A finding is not transient, so `reconcile_month` is not retried.

**When it fails:** read the **run note** (the verdict and the month's counts), the log of
`reconcile_month` and the report (`reconciliation/<YYYY-MM>/index.html`, also under *Browse →
Vaccination reports*; its drill-down tables name the care units and record ids, never a
personnummer). Missing records: re-run the daily runs of the days concerned (trigger
`vaccinations_daily` with `day`, or a backfill); the ledger makes that safe, a re-run sends only
what the register does not have. A source not read: fix its connection. Then clear
`reconcile_month` (or trigger this DAG with `month`): reconciling is read-only apart from the
stored result, so it can be repeated at will.

**Alerts** (connection `vaxreport_alerts`; without it they are only logged): a finding sends an
alert with the month's counts per class and the reasons, then the failed task sends its own alert naming
`reconcile_month`. No alert carries personal data.

**Connections:** `nvr_api`, `vaxreport_db`, the enabled sources (`VAXREPORT_SOURCES`), and
optionally `vaxreport_airflow_api` (a service user for the REST API) for the run note with the
month's counts and verdict.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from vaxreport_airflow.alerts import VaxreportAlertNotifier


def _setup():
    from datetime import date

    from vaxreport.reconcile.month import previous_month
    from vaxreport_airflow.hooks import runtime

    context = get_current_context()
    named = context["params"].get("month")
    month = date.fromisoformat(f"{named}-01") if named else previous_month(context["logical_date"])
    return runtime(context["run_id"]), month, int(context["params"].get("threshold") or 0)


@dag(
    dag_id="vaccinations_monthly_reconciliation",
    schedule="0 4 2 * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="Europe/Stockholm"),
    catchup=False,
    max_active_runs=1,
    tags=["vaxreport", "nvr", "reconciliation", "monthly"],
    default_args={
        "owner": "vaxreport",
        "retries": 1,
        "retry_delay": timedelta(minutes=15),
        "on_failure_callback": VaxreportAlertNotifier(),
    },
    params={
        "month": Param(None, type=["null", "string"], pattern=r"^\d{4}-\d{2}$", description="YYYY-MM to reconcile"),
        "threshold": Param(0, type="integer", minimum=0, description="tolerated unexplained difference (records)"),
    },
    doc_md=__doc__,
)
def vaccinations_monthly_reconciliation():
    @task
    def apply_register_findings() -> dict:
        from vaxreport.reconcile.month import month_bounds
        from vaxreport.reconcile.run import apply_register_findings as apply

        rt, month, _ = _setup()
        return apply(rt, *month_bounds(month))

    @task
    def reconcile_month(findings: dict) -> dict:
        import logging

        from vaxreport.reconcile.run import reconcile_and_report, reconciliation_line
        from vaxreport.reports.run_notes import monthly_note
        from vaxreport_airflow.run_note import set_run_note

        rt, month, threshold = _setup()
        summary = reconcile_and_report(rt, month, threshold)
        logging.getLogger("vaxreport").info("%s", reconciliation_line(summary))
        # the note first: when the task turns red below, the note says why
        set_run_note(get_current_context(), monthly_note(summary, summary["problems"]))
        if summary["problems"]:  # a finding is not transient: fail at once, no retry
            from airflow.sdk.exceptions import AirflowFailException

            from vaxreport_airflow.alerts import alert_reconciliation

            alert_reconciliation(get_current_context(), summary)  # counts per class; the run alert follows

            raise AirflowFailException("reconciliation found problems: " + "; ".join(summary["problems"]))
        return {k: v for k, v in summary.items() if k != "problems"}

    reconcile_month(apply_register_findings())


vaccinations_monthly_reconciliation()
