"""The monthly reconciliation's steps, shared by its DAG and `python -m vaxreport reconcile`."""

from __future__ import annotations

import logging
from datetime import date

import sqlalchemy as sa

from vaxreport.ledger import schema as s
from vaxreport.ledger.store import now_text
from vaxreport.pipeline import Runtime, source_kind
from vaxreport.reconcile.month import (
    Reconciliation,
    classify_source,
    last_reported_day,
    month_bounds,
    store_result,
)
from vaxreport.registry.client import RegistryError
from vaxreport.registry.outcomes import scrub
from vaxreport.validation.reasons import reason

log = logging.getLogger(__name__)


def apply_register_findings(rt: Runtime, first: date, following: date) -> dict:
    """Move records the register later found fault with from accepted to rejected_register, with
    its code and text, so they appear in the next rejection report (and count as rejected)."""
    with rt.registry() as client:
        rows = client.findings(first.isoformat(), following.isoformat())
    rv = s.record_versions
    moved = 0
    with rt.ledger().begin() as conn:
        for row in rows:
            identifier = row.get("identifier") if isinstance(row.get("identifier"), dict) else {}
            code = str(row.get("code") or "REGISTER-FINDING")
            text = reason(code)
            moved += conn.execute(
                sa.update(rv)
                .where(
                    rv.c.source == identifier.get("system"),
                    rv.c.source_record_id == identifier.get("value"),
                    rv.c.state == s.ACCEPTED,
                )
                .values(
                    state=s.REJECTED_REGISTER,
                    code=code,
                    reason_sv=text.sv if text else scrub(str(row.get("text") or ""))[:500],
                    reason_en=text.en if text else None,
                    updated_at=now_text(),
                )
            ).rowcount
    log.info(
        "register findings %s..%s: %d rows, %d ledger records moved to rejected_register",
        first,
        following,
        len(rows),
        moved,
    )
    return {"findings": len(rows), "moved": moved}


def reconcile(rt: Runtime, month: date) -> Reconciliation:
    """Classify every source record given in the month and fetch the register's count per unit."""
    first, following = month_bounds(month)
    ledger = rt.ledger()
    result = Reconciliation(month=first)
    reported = last_reported_day(ledger)
    for conn_id in rt.sources:
        try:
            kind, system_uri = source_kind(rt, conn_id)
            result.records += classify_source(rt.engine(conn_id), ledger, kind, system_uri, first, following, reported)
        except Exception as exc:
            log.error("source %s could not be reconciled: %s: %s", conn_id, type(exc).__name__, scrub(str(exc))[:300])
            result.failed_sources.append(conn_id)
    units = sorted({r.care_unit_hsa_id for r in result.records if r.care_unit_hsa_id})
    try:
        with rt.registry() as client:
            for unit in units:
                result.register_counts[unit] = client.count(first.isoformat(), following.isoformat(), unit)
    except RegistryError as exc:
        log.warning("the register's counts could not be fetched (%s); reconciling without them", exc)
    store_result(ledger, result)
    counts = result.class_counts()
    log.info(
        "reconciled %s: %s; unexplained difference %d",
        first.isoformat()[:7],
        " ".join(f"{k}={v}" for k, v in counts.items()),
        result.unexplained(),
    )
    return result


def reconcile_month(rt: Runtime, month: date, threshold: int = 0) -> dict:
    """Findings, reconciliation and report for one month; returns counts and the verdict only."""
    first, following = month_bounds(month)
    try:
        findings = apply_register_findings(rt, first, following)
    except RegistryError as exc:
        log.error("the register's findings could not be fetched: %s", exc)
        summary = reconcile_and_report(rt, first, threshold)
        return {**summary, "problems": ["the register's later findings could not be fetched", *summary["problems"]]}
    return {
        **reconcile_and_report(rt, first, threshold),
        "findings": findings["findings"],
        "findings_moved": findings["moved"],
    }


def reconcile_and_report(rt: Runtime, month: date, threshold: int = 0) -> dict:
    """Reconciliation and report for one month (after the findings step); counts and verdict only."""
    from vaxreport.reconcile.month import trend
    from vaxreport.reports import monthly
    from vaxreport.settings import reports_dir

    first, _ = month_bounds(month)
    problems = []
    result = reconcile(rt, first)
    label = first.isoformat()[:7]
    page = monthly.write(result, trend(rt.ledger(), first), reports_dir() / "reconciliation" / label, threshold)
    counts = result.class_counts()
    if counts["missing"]:
        problems.append(f"{counts['missing']} records missing from the ledger")
    if result.unexplained() > threshold:
        problems.append(f"unexplained difference {result.unexplained()} against the register (threshold {threshold})")
    if result.failed_sources:
        problems.append(f"sources not read: {', '.join(result.failed_sources)}")
    return {
        "month": label,
        **counts,
        "unexplained": result.unexplained(),
        "findings": 0,
        "findings_moved": 0,
        "problems": problems,
        "report": str(page),
    }


def reconciliation_line(summary: dict) -> str:
    from vaxreport.reconcile.month import CLASSES

    fields = " ".join(f"{k}={summary[k]}" for k in (*CLASSES, "unexplained"))
    return f"vaxreport reconciliation {summary['month']}: {fields}"
