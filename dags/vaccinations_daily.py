"""
### vaccinations_daily

Reports one day's vaccinations to the National Vaccination Register (NVR).

Each run takes the records **registered or changed** on one Stockholm calendar day (late
registrations included) from every enabled journal-system source, checks them against the
register's rules, sends the valid ones in FHIR batch Bundles of at most 100, and records every
record's outcome in the ledger (`vaxreport_db`). A scheduled run at 02:00 (Stockholm) reports the
previous day and should be done by **06:00**.

**Params**

| name | meaning | default |
| --- | --- | --- |
| `day` | the registration day to report (YYYY-MM-DD) | none: the Stockholm day before the run's logical date |
| `dry_run` | validate and write the bundles to `var/bundles/<day>/` (mode 0600), send nothing | `false` |

**Connections:** `nvr_api` (register: host = base URL, login = client id, password = client
secret, extra `client_secret_expires`), `vaxreport_db` (ledger), one per journal-system source
(extra `kind`: `legacy_export`, `vaccination_journal` or `general_ehr`); the enabled ones are
listed in `VAXREPORT_SOURCES`. Optional: `vaxreport_airflow_api` (run notes) and
`vaxreport_alerts` (alerts). Extraction is mapped over the sources: one failing source is retried
and reported (the run turns red: `fail_run`, the last task, fails whenever another task failed)
while the others are reported as usual.

**Submission in shares:** `submit_bundles` is mapped over one share per 200 pending bundles (at most
16), at most 4 at once over all runs, each claiming chunks of bundles (row locks on PostgreSQL) at a
quarter of the register's rate. `finish_submission` then resends what failed transiently or a dead
share left, sends the deletes, and fails (to be retried) while the register is down.

**When it fails**

1. Read the **run note** (the day's counts and what needs attention first: a source not read, a
   submission that did not finish), then the **log of the red task** (counts and hashed person
   keys only, never a personnummer).
2. Fix the cause: a source connection (`extract_vaccinations`, the map index names the source),
   the register or its credentials (`validate_records` refreshes the catalog, `finish_submission`
   sends), the ledger database.
3. **Clear the red task** (downstream tasks follow), or re-run the day: trigger the DAG with
   `day` = that day, or `airflow backfill create --dag-id vaccinations_daily --from-date D+1
   --to-date D+1` (a run reports the day before its logical date).

**Safe to re-run**, any day, any number of times: the ledger knows every record version it has
seen and every bundle it has sent (claimed before sending, with its `X-Request-ID`), so a re-run
sends only what is still open (`sent=0` for a day already reported) and concurrent runs never send
a record twice. Records that failed because the register was unreachable are sent by the next run,
whatever day it reports. Rejected records are listed per care unit in
`var/reports/<day>/rejections/` (also under *Browse → Vaccination reports*).

**Alerts** (connection `vaxreport_alerts`, a webhook URL or SMTP; without it they are only logged):
every task that fails for good (after its retries) sends an alert naming the run, its day and the
task. A **deadline** of 06:00 Stockholm holds the scheduled run: if it has not succeeded by then, an
alert says so (manual runs and backfills are not held to it). The deadline callback runs on the
scheduler's executor (a `SyncCallback`), so it needs no triggerer. No alert carries personal data:
identifiers of runs and tasks, and counts.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, Param, TriggerRule, dag, get_current_context, task

from vaxreport_airflow.alerts import VaxreportAlertNotifier, daily_deadline

VACCINE_CATALOG = Asset(name="vaxreport_vaccine_catalog")
PARALLEL_SHARES = 4  # submit_bundles sending at once over all runs, each at this part of the register's rate


def _setup():
    """The package runtime and the run's day, from the task's context."""
    from vaxreport_airflow.hooks import run_day, runtime

    context = get_current_context()
    return runtime(context["run_id"]), run_day(context), bool(context["params"].get("dry_run"))


@dag(
    dag_id="vaccinations_daily",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="Europe/Stockholm"),
    catchup=False,
    max_active_runs=1,
    tags=["vaxreport", "nvr", "daily"],
    default_args={
        "owner": "vaxreport",
        "retries": 2,
        "retry_delay": timedelta(minutes=5),
        "on_failure_callback": VaxreportAlertNotifier(),
    },
    params={
        "day": Param(None, type=["null", "string"], format="date", description="Registration day to report"),
        "dry_run": Param(False, type="boolean", description="Write bundles to files, send nothing"),
    },
    doc_md=__doc__,
    deadline=daily_deadline(),
)
def vaccinations_daily():
    @task
    def list_sources() -> list[str]:
        from vaxreport.settings import source_conn_ids

        return source_conn_ids()

    @task(map_index_template="{{ source_conn_id }}")
    def extract_vaccinations(source: str) -> dict:
        from vaxreport.pipeline import extract_source

        get_current_context()["source_conn_id"] = source
        rt, day, _ = _setup()
        return extract_source(rt, source, day)

    @task(trigger_rule=TriggerRule.ALL_DONE, outlets=[VACCINE_CATALOG])
    def validate_records(sources: list[str], extracted: list[dict]) -> dict:
        """Runs when every source is done, failed ones included: the others are still reported."""
        from vaxreport.pipeline import ensure_catalog, validate_day

        rt, day, _ = _setup()
        ensure_catalog(rt)  # refreshed here only if register_vaccine_catalog has not run for a day
        result = validate_day(rt, day)
        done = {e["source"] for e in extracted if e}
        return {
            **{k: v for k, v in result.items() if k != "unexpected_by_code"},
            "failed_sources": [src for src in sources if src not in done],
        }

    @task
    def build_bundles(validated: dict) -> list[dict]:
        """Returns the submission plan: one entry per share."""
        from vaxreport.pipeline import build_day
        from vaxreport.submission import plan_shares

        rt, day, dry_run = _setup()
        return plan_shares(rt, day, build_day(rt, day, dry_run=dry_run))

    @task(
        max_active_tis_per_dag=PARALLEL_SHARES,
        max_active_tis_per_dagrun=PARALLEL_SHARES,
        map_index_template="{{ submission_share }}",
    )
    def submit_bundles(share: int, shares: int, per_share: int) -> dict:
        from vaxreport.submission import submit_share

        get_current_context()["submission_share"] = f"share {share + 1} of {shares}"
        rt, day, dry_run = _setup()
        return submit_share(rt, day, share, per_share, parallel=PARALLEL_SHARES, dry_run=dry_run)

    @task(trigger_rule=TriggerRule.ALL_DONE, max_active_tis_per_dag=1)
    def finish_submission(plan: list[dict] | None, shares: list[dict]) -> dict:
        """Runs when every share is done, failed ones too; raises while the register is down, for a retry."""
        from vaxreport.submission import finish_submission

        rt, day, dry_run = _setup()
        result = finish_submission(rt, day, list(shares), plan=plan, dry_run=dry_run)
        if result["unavailable"]:
            raise RuntimeError(f"register unavailable; {result['sent']} entries sent, the rest failed for a retry")
        return result

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def write_rejection_report() -> dict:
        """Runs whatever became of submission: the day's counts always reach the report and run note."""
        from vaxreport.ledger.store import sent_in_context
        from vaxreport.pipeline import report_day
        from vaxreport.reports.run_notes import daily_note
        from vaxreport_airflow.run_note import set_run_note

        rt, day, _ = _setup()
        context = get_current_context()
        submitted = context["ti"].xcom_pull(task_ids="finish_submission")
        validated = context["ti"].xcom_pull(task_ids="validate_records") or {}
        # a failed submission left no XCom: then what this run's bundles carried, from the ledger
        sent = submitted["sent"] if submitted else sent_in_context(rt.ledger(), rt.context_id)
        summary = report_day(rt, day, sent=sent)
        note = daily_note(summary, validated.get("failed_sources"), submit_failed=submitted is None)
        return {**summary, "note_written": set_run_note(context, note)}

    @task(trigger_rule=TriggerRule.ALL_DONE, retries=0)
    def fail_run() -> None:
        """Turns the run red when a task failed (skipped otherwise): Airflow sets a run's state from
        its last tasks only, and the report, which runs whatever happened, would leave it green."""
        from vaxreport_airflow.alerts import fail_if_tasks_failed

        fail_if_tasks_failed(get_current_context())

    sources = list_sources()
    extracted = extract_vaccinations.expand(source=sources)
    validated = validate_records(sources, extracted)
    plan = build_bundles(validated)
    shares = submit_bundles.expand_kwargs(plan)
    finished = finish_submission(plan, shares)
    report = write_rejection_report()
    finished >> report
    [sources, extracted, validated, plan, shares, finished, report] >> fail_run()


vaccinations_daily()
