"""Operator alerts from Airflow: a notifier that sends `vaxreport.alerts` messages to a webhook or by
e-mail, and the callbacks the DAGs wire to it.

The connection `vaxreport_alerts` decides where an alert goes: conn type `http`/`https` (host = the
webhook URL) POSTs the alert as JSON with httpx; conn type `smtp` sends it as mail through the SMTP
provider's `SmtpNotifier` (extra `to`, optional `from_email`, `disable_ssl`, `disable_tls`). A
region picks whichever its on-call tooling takes; both carry the same text. Without the connection
an alert is logged as a warning and nothing else happens: an unsent alert must never turn a run
red or hide the reason it is red. A failing receiver is logged the same way.

Where each callback runs in Airflow 3.3: a task's `on_failure_callback` in the task's own
process once its last try failed (the DAGs set `VaxreportAlertNotifier()` in `default_args`; the
daily DAG's last task, `fail_run`, fails whenever another did, so the run turns red and alerts
too), the deadline's `SyncCallback` on the scheduler's executor, the reconciliation finding and
the secret check inside their tasks. None of them has the failed records, only identifiers and
counts, and `vaxreport.alerts` scrubs the free text that goes in.
"""

from __future__ import annotations

import contextlib
import html
import logging
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook, BaseNotifier
from airflow.sdk.exceptions import AirflowNotFoundException

if TYPE_CHECKING:
    from datetime import date

    from vaxreport.alerts import Alert

ALERT_CONN_ID = "vaxreport_alerts"
DEADLINE_LOCAL = "06:00 Europe/Stockholm"
TIMEOUT_S = 10.0
_FAILED = frozenset({"failed", "upstream_failed"})
RUN_WATCHER = "fail_run"  # the daily DAG's last task, failing the run when another task failed

log = logging.getLogger("vaxreport")
_warned_missing: set[str] = set()


def send(alert: Alert, conn_id: str = ALERT_CONN_ID) -> bool:
    """Deliver one alert; True when the receiver took it. Never raises."""
    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        if conn_id not in _warned_missing:  # once per process: a run's callbacks share one
            _warned_missing.add(conn_id)
            log.warning("alert not sent (no connection %r): %s", conn_id, alert.subject)
        return False
    try:
        if (conn.conn_type or "").lower() in ("smtp", "email"):
            _send_mail(conn, conn_id, alert)
        else:
            _post_webhook(conn, alert)
    except Exception as exc:  # a broken receiver must not fail the run it reports on
        # the type and an HTTP status only: a webhook URL (often itself the secret) is in httpx's text
        status = getattr(getattr(exc, "response", None), "status_code", None)
        shown = f" (HTTP {status})" if status else ""
        log.warning("alert not sent through %s: %s%s", conn_id, type(exc).__name__, shown)
        return False
    log.info("alert sent through %s: %s", conn_id, alert.subject)
    return True


def _webhook_url(conn: Any) -> str:
    host = (conn.host or "").strip()
    if host.startswith(("http://", "https://")):
        return host
    scheme = "https" if (conn.conn_type or "").lower() != "http" else "http"
    path = f"/{conn.schema.lstrip('/')}" if conn.schema else ""
    return f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "") + path


def _post_webhook(conn: Any, alert: Alert) -> None:
    import httpx
    from airflow.sdk.log import mask_secret

    url = _webhook_url(conn)
    mask_secret(url)  # a chat webhook's URL is its credential
    headers = {str(k): str(v) for k, v in (conn.extra_dejson.get("headers") or {}).items()}
    if conn.password:  # a bearer token, if the receiver wants one
        mask_secret(conn.password)
        headers["Authorization"] = f"Bearer {conn.password}"
    answer = httpx.post(url, json=alert.payload(), headers=headers, timeout=TIMEOUT_S)
    answer.raise_for_status()


def _send_mail(conn: Any, conn_id: str, alert: Alert) -> None:
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    to = conn.extra_dejson.get("to")
    if not to:
        raise ValueError(f"connection {conn_id} needs the extra field 'to' (comma-separated addresses)")
    mail = SmtpNotifier(
        to=[a.strip() for a in to.split(",")] if isinstance(to, str) else to,
        from_email=conn.extra_dejson.get("from_email") or conn.login or None,
        subject=alert.subject,
        html_content=f"<pre>{html.escape(alert.text)}</pre>",
        smtp_conn_id=conn_id,
    )
    mail.notify({})  # not __call__: the text is final, nothing in it is a Jinja template


class VaxreportAlertNotifier(BaseNotifier):
    """`on_failure_callback=VaxreportAlertNotifier()` on a task (one alert per task that failed for
    good) or a DAG (one per failed run); `VaxreportAlertNotifier(alert)` sends a composed alert."""

    def __init__(self, alert: Alert | None = None, conn_id: str = ALERT_CONN_ID) -> None:
        super().__init__()
        self.alert = alert
        self.conn_id = conn_id

    def notify(self, context: Any) -> None:
        send(self.alert or failed_run_alert_from(context), self.conn_id)


def failed_tasks(context: Any) -> list[str]:
    """The failed task: a task's callback is about itself (mapped ones as `task[index]`); a
    DAG-level callback asks Airflow through the Task SDK for every failed task of the run."""
    ti, task = context.get("ti"), context.get("task")
    if getattr(ti, "task_id", None) == RUN_WATCHER:  # its alert is the run's: it names what failed
        with contextlib.suppress(Exception):
            return _failed_besides_watcher(context["dag"], context.get("run_id"))
    if ti is not None and getattr(ti, "task_id", None) and task is not None:
        index = getattr(ti, "map_index", -1)
        return [ti.task_id if index is None or index < 0 else f"{ti.task_id}[{index}]"]
    try:
        return run_failed_tasks(context["dag"], context.get("run_id"), _FAILED)
    except Exception as exc:  # no supervisor to ask: the run's alert still goes out
        log.debug("task states not available to the callback: %s", type(exc).__name__)
        return [ti.task_id] if ti is not None and getattr(ti, "task_id", None) else []


def fail_if_tasks_failed(context: Any) -> None:
    """The daily DAG's last task (`fail_run`, trigger rule all_done): fails, so the run turns red,
    when any task of the run failed, naming them; skipped when none did."""
    from airflow.sdk.exceptions import AirflowSkipException

    failed = _failed_besides_watcher(context["dag"], context["run_id"])
    if not failed:
        raise AirflowSkipException("no task of this run failed")
    raise RuntimeError(f"failed in this run: {', '.join(failed)}; read the run note and their logs")


def _failed_besides_watcher(dag: Any, run_id: str | None) -> list[str]:
    """The run's failed tasks, but `fail_run`, which fails because they did."""
    return [t for t in run_failed_tasks(dag, run_id) if t != RUN_WATCHER]


def run_failed_tasks(dag: Any, run_id: str, states: frozenset[str] = frozenset({"failed"})) -> list[str]:
    """Every failed task of a run (mapped ones as `task[index]`), asked of Airflow through the Task
    SDK: from a task of that run, or a DAG-level callback."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    found = RuntimeTaskInstance.get_task_states(dag_id=dag.dag_id, run_ids=[run_id]).get(run_id, {})
    known = set(dag.task_ids)
    names = []
    for key, state in found.items():
        if state not in states:
            continue
        base, _, index = key.rpartition("_")
        names.append(f"{base}[{index}]" if key not in known and base in known and index.isdigit() else key)
    return sorted(names)


def _run_day(context: Any) -> date | None:
    if getattr(context.get("dag"), "dag_id", None) != "vaccinations_daily":
        return None
    try:
        from vaxreport_airflow.hooks import run_day

        return run_day(context)
    except Exception:
        return None


def failed_run_alert_from(context: Any) -> Alert:
    from vaxreport.alerts import failed_run_alert

    dag_run = context.get("dag_run")
    return failed_run_alert(
        dag_id=getattr(context.get("dag"), "dag_id", "?"),
        run_id=str(context.get("run_id") or getattr(dag_run, "run_id", "?")),
        logical_date=context.get("logical_date") or getattr(dag_run, "logical_date", None),
        day=_run_day(context),
        failed_tasks=failed_tasks(context),
        state="failed",
        reason=context.get("reason"),
        error=context.get("exception"),
    )


def alert_reconciliation(context: Any, summary: dict) -> bool:
    """Called by `reconcile_month` when the month has a finding, before the task turns red."""
    from vaxreport.alerts import reconciliation_alert

    alert = reconciliation_alert(
        context["dag"].dag_id, context["run_id"], summary["month"], summary, summary.get("problems") or []
    )
    return send(alert)


def daily_deadline() -> Any:
    """The daily DAG's deadline: 06:00 Stockholm the day after the reported day, or None.

    A scheduled run's logical date is when it triggers (Airflow 3 cron timetable), 02:00 Stockholm,
    so + 4 h holds across DST (autumn: the second 02:00 CET + 4 h = 06:00 CET), except on the
    spring-forward Sunday (no 02:00: the run triggers 03:00 CEST, the alert comes 07:00). Declared
    only where the dag-processor parses (process context "client") or when forced with
    VAXREPORT_DAILY_DEADLINE=on: 3.3.2's dag.test() (`make run`) crashes on a green run that has one.
    """
    import os
    from datetime import timedelta

    from airflow.sdk import DeadlineAlert, DeadlineReference, SyncCallback

    where = os.environ.get("VAXREPORT_DAILY_DEADLINE", os.environ.get("_AIRFLOW_PROCESS_CONTEXT"))
    if where not in ("on", "client"):
        return None
    callback = SyncCallback("vaxreport_airflow.alerts.deadline_missed", kwargs={"deadline": DEADLINE_LOCAL})
    reference = DeadlineReference.DAGRUN_LOGICAL_DATE
    return DeadlineAlert(reference=reference, interval=timedelta(hours=4), callback=callback)


def deadline_missed(context: dict | None = None, deadline: str = DEADLINE_LOCAL) -> None:
    """The daily DAG's deadline callback (a `SyncCallback`, run by the scheduler's executor; the
    context is the run as JSON). Only scheduled runs are held to 06:00: a backfill's or a manual
    run's logical date says nothing about when an operator expects it done."""
    from vaxreport.alerts import deadline_alert

    run = (context or {}).get("dag_run") or {}
    if run.get("state") == "failed":  # its failed tasks have alerted already; Airflow 3.3 keeps the deadline
        log.info("deadline passed for failed run %s; its failure was alerted", run.get("run_id"))
        return
    if run.get("run_type") not in (None, "scheduled"):
        log.info("deadline passed for %s run %s; not alerted", run.get("run_type"), run.get("run_id"))
        return
    alert = deadline_alert(
        dag_id=str(run.get("dag_id") or "vaccinations_daily"),
        run_id=str(run.get("run_id") or "?"),
        logical_date=run.get("logical_date"),
        deadline=deadline,
        state=run.get("state"),
    )
    send(alert)


def check_client_secret(conn_id: str = "nvr_api", today: date | None = None) -> dict:
    """The daily secret check: logs the state, alerts from 30 days before expiry. Never raises."""
    from vaxreport import secret_expiry
    from vaxreport.alerts import secret_expiry_alert
    from vaxreport.window import STOCKHOLM
    from vaxreport_airflow.hooks import connection_info

    if today is None:
        from datetime import datetime

        today = datetime.now(STOCKHOLM).date()
    try:
        extra = connection_info(conn_id).extra
    except Exception as exc:  # no register connection: the catalog refresh fails for that, not this
        log.warning("secret expiry not checked: connection %s not readable (%s)", conn_id, type(exc).__name__)
        return {"status": "no_connection", "days_left": None, "alert_sent": False}
    expiry = secret_expiry.check(extra, today)
    line = secret_expiry.log_line(expiry, conn_id)
    level = {secret_expiry.OK: logging.INFO, secret_expiry.EXPIRED: logging.ERROR}.get(expiry.status, logging.WARNING)
    log.log(level, "%s", line)
    sent = False
    if expiry.should_alert and expiry.days_left is not None and expiry.expires is not None:
        sent = send(secret_expiry_alert(conn_id, expiry.days_left, expiry.expires))
    return {"status": expiry.status, "days_left": expiry.days_left, "alert_sent": sent}
