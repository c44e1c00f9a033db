"""The text of every operator alert: a failed run, a reconciliation finding, a missed deadline, an
expiring register secret.

Composed here, without Airflow, so it is tested directly; `plugins/vaxreport_airflow/alerts.py`
only fills it from Airflow's context and sends it. An alert leaves the installation (a chat
webhook, an e-mail), so it carries identifiers of runs and tasks and counts, never a record-level
value: every free text that goes in (an exception's message, a problem line) is scrubbed of
anything shaped like a person id first, and nothing else free-form is accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime

INSTRUCTION = "See the run's note and the task log in the Airflow UI."
# 10 or more digits in a row (a personnummer or samordningsnummer without separator, 10 or 12
# digits), or 6/8 digits, a separator and 4 digits (the way they are written). Timestamps and
# run ids (2026-11-19T02:00:00) have neither shape.
_PERSON_ID_SHAPED = re.compile(r"(?<!\d)(?:\d{10,}|\d{6}[-+ ]?\d{4}|\d{8}[-+ ]?\d{4})(?!\d)")
_FREE_TEXT_MAX = 300


def scrub(text: object, limit: int = _FREE_TEXT_MAX) -> str:
    """Free text bound for an alert, with anything shaped like a person id replaced and clipped:
    an exception message may quote a record, and the alert leaves the installation."""
    clean = _PERSON_ID_SHAPED.sub("[person-id]", " ".join(str(text).split()))
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


@dataclass(frozen=True)
class Alert:
    """One alert: a subject line, a few lines of text, and the same facts as JSON-able fields
    (identifiers and counts only) for a webhook receiver that wants to route on them."""

    kind: str
    subject: str
    text: str
    fields: dict = field(default_factory=dict)

    def payload(self) -> dict:
        """The webhook body; `text` is the key chat tools (Slack, Teams, Mattermost) display."""
        return {"source": "vaxreport", "kind": self.kind, "subject": self.subject, "text": self.text, **self.fields}


def _when(value: datetime | date | str | None) -> str:
    if value is None or value == "":
        return "none"
    return value.isoformat() if isinstance(value, (datetime, date)) else scrub(value, 60)


def failed_run_alert(
    dag_id: str,
    run_id: str,
    logical_date: datetime | str | None,
    day: date | str | None,
    failed_tasks: list[str],
    state: str = "failed",
    reason: str | None = None,
    error: object = None,
) -> Alert:
    """A run that ended red: which DAG, which run, which day, which tasks."""
    tasks = sorted({scrub(t, 120) for t in failed_tasks}) or ["(unknown: see the run in the Airflow UI)"]
    lines = [
        f"vaxreport: {dag_id} run {scrub(run_id, 120)} is {state}.",
        f"Logical date: {_when(logical_date)}; day: {_when(day)}.",
        f"Failed tasks: {', '.join(tasks)}.",
    ]
    if reason:
        lines.append(f"Reason: {scrub(reason, 120)}.")
    if isinstance(error, BaseException):
        lines.append(f"Error: {type(error).__name__}: {scrub(error)}")
    elif error is not None:
        lines.append(f"Error: {scrub(error)}")
    lines.append(INSTRUCTION)
    return Alert(
        kind="run_failed",
        subject=f"[vaxreport] {dag_id} {state}: {', '.join(tasks)}",
        text="\n".join(lines),
        fields={
            "dag_id": dag_id,
            "run_id": scrub(run_id, 120),
            "logical_date": _when(logical_date),
            "day": _when(day),
            "state": state,
            "failed_tasks": tasks,
        },
    )


def reconciliation_alert(dag_id: str, run_id: str, month: str, counts: dict, problems: list[str]) -> Alert:
    """A month whose records do not add up: the counts per class and why it is a finding."""
    from vaxreport.reconcile.month import CLASSES  # here: only the reconciliation task needs it

    order = ("missing", *(c for c in CLASSES if c != "missing"))  # what needs a person first
    classes = {k: int(counts.get(k, 0)) for k in order}
    unexplained = int(counts.get("unexplained", 0))
    why = [scrub(p, 200) for p in problems] or ["(see the run note)"]
    lines = [
        f"vaxreport: reconciliation of {scrub(month, 10)} found a gap ({dag_id} run {scrub(run_id, 120)}).",
        "Findings: " + "; ".join(why) + ".",
        "Records per class: " + ", ".join(f"{k}={v}" for k, v in classes.items()) + f"; unexplained={unexplained}.",
        f"Report: reports/reconciliation/{scrub(month, 10)}/. {INSTRUCTION}",
    ]
    return Alert(
        kind="reconciliation_finding",
        subject=(
            f"[vaxreport] reconciliation {scrub(month, 10)}: {classes['missing']} missing, {unexplained} unexplained"
        ),
        text="\n".join(lines),
        fields={
            "dag_id": dag_id,
            "run_id": scrub(run_id, 120),
            "month": scrub(month, 10),
            "counts": {**classes, "unexplained": unexplained},
            "problems": why,
        },
    )


def deadline_alert(
    dag_id: str, run_id: str, logical_date: datetime | str | None, deadline: str, state: str | None
) -> Alert:
    """The nightly run has not finished by its deadline (it may still be running, or have failed)."""
    lines = [
        f"vaxreport: {dag_id} run {scrub(run_id, 120)} had not finished by {scrub(deadline, 60)}.",
        f"Logical date: {_when(logical_date)}; state at the deadline: {state or 'unknown'}.",
        "Yesterday's vaccinations may not have reached the register yet. " + INSTRUCTION,
    ]
    return Alert(
        kind="deadline_missed",
        subject=f"[vaxreport] {dag_id} not finished by {scrub(deadline, 60)}",
        text="\n".join(lines),
        fields={
            "dag_id": dag_id,
            "run_id": scrub(run_id, 120),
            "logical_date": _when(logical_date),
            "deadline": scrub(deadline, 60),
            "state": state or "unknown",
        },
    )


def secret_expiry_alert(conn_id: str, days_left: int, expires: date) -> Alert:
    """The register's client secret expires soon (or has): rotate it before submission stops."""
    if days_left <= 0:
        head = f"vaxreport: the register client secret of connection {conn_id} EXPIRED on {expires.isoformat()}."
        subject = f"[vaxreport] register client secret expired on {expires.isoformat()}"
    else:
        head = (
            f"vaxreport: the register client secret of connection {conn_id} expires on {expires.isoformat()}"
            f" ({days_left} days left)."
        )
        subject = f"[vaxreport] register client secret expires in {days_left} days"
    lines = [
        head,
        "Request a new secret from the register, then update the connection's password and its extra"
        " field client_secret_expires (YYYY-MM-DD).",
    ]
    return Alert(
        kind="secret_expiry",
        subject=subject,
        text="\n".join(lines),
        fields={"conn_id": conn_id, "days_left": days_left, "expires": expires.isoformat()},
    )
