"""The run notes an operator reads in the Airflow UI: a day's or a month's counts in a few lines.

A note is the first thing seen next to a red or green run, so it says the verdict first and why,
then the counts. Counts only: a note is stored in Airflow's metadata database and shown to every
UI user, so no record-level value ever goes into one. Airflow caps a note at 1,000 characters.
"""

from __future__ import annotations

NOTE_LIMIT = 1000

DAILY_FIELDS = (
    ("accepted", "accepted"),
    ("duplicate", "already in the register"),
    ("rejected_local", "rejected locally"),
    ("rejected_register", "rejected by the register"),
    ("excluded", "excluded (not reportable)"),
    ("failed", "failed, sent again by the next run"),
    ("pending", "pending"),
)
MONTHLY_FIELDS = (
    ("missing", "MISSING from the ledger"),
    ("accepted", "accepted"),
    ("duplicate", "already in the register"),
    ("rejected_local", "rejected locally"),
    ("rejected_register", "rejected by the register, still open"),
    ("excluded", "excluded"),
    ("voided", "voided"),
    ("failed_or_pending", "failed or pending"),
)


def _clip(text: str) -> str:
    return text if len(text) <= NOTE_LIMIT else text[: NOTE_LIMIT - 1] + "…"


def _lines(summary: dict, fields: tuple[tuple[str, str], ...]) -> list[str]:
    return [f"- {summary[key]:,} {label}" for key, label in fields if key in summary]


def daily_note(summary: dict, failed_sources: list[str] | None = None, submit_failed: bool = False) -> str:
    """The note of a `vaccinations_daily` run, from the day's summary (`pipeline.day_summary`)."""
    problems = []
    if failed_sources:
        problems.append(f"sources not read: {', '.join(failed_sources)}")
    if submit_failed:
        problems.append("submission did not finish (register unreachable?); see submit_bundles")
    verdict = "NEEDS ATTENTION: " + "; ".join(problems) if problems else "reported"
    lines = [
        f"**{summary['day']}**: {verdict}",
        "",
        f"{summary['extracted']:,} records extracted, {summary['sent']:,} sent by this run:",
        *_lines(summary, DAILY_FIELDS),
        "",
        f"Rejections per care unit: reports/{summary['day']}/rejections/",
    ]
    return _clip("\n".join(lines))


def monthly_note(summary: dict, problems: list[str]) -> str:
    """The note of a `vaccinations_monthly_reconciliation` run; `problems` is why it failed."""
    verdict = "FAILED: " + "; ".join(problems) if problems else "reconciled, nothing missing"
    total = sum(summary[key] for key, _ in MONTHLY_FIELDS if key in summary)
    lines = [
        f"**{summary['month']}**: {verdict}",
        "",
        f"{total:,} source records given in the month:",
        *_lines(summary, MONTHLY_FIELDS),
        f"- {summary['unexplained']:,} unexplained difference against the register",
        "",
        f"Report: reports/reconciliation/{summary['month']}/",
    ]
    return _clip("\n".join(lines))
