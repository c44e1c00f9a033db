"""The run notes: verdict first, every count present, within Airflow's 1,000-character cap."""

import re

import pytest

from vaxreport.pipeline import SUMMARY_STATES
from vaxreport.reconcile.month import CLASSES
from vaxreport.reports.run_notes import DAILY_FIELDS, MONTHLY_FIELDS, NOTE_LIMIT, daily_note, monthly_note

pytestmark = pytest.mark.unit

DAY = {
    "day": "2026-11-21",
    "extracted": 2000,
    "excluded": 185,
    "rejected_local": 131,
    "accepted": 1665,
    "duplicate": 19,
    "rejected_register": 0,
    "failed": 0,
    "sent": 1684,
    "pending": 0,
}
MONTH = {
    "month": "2026-10",
    "accepted": 40123,
    "duplicate": 12,
    "rejected_local": 900,
    "rejected_register": 4,
    "excluded": 3000,
    "voided": 7,
    "failed_or_pending": 2,
    "missing": 3,
    "unexplained": 2,
}


def _numbers(text: str) -> list[int]:
    return [int(n.replace(",", "")) for n in re.findall(r"(?<![\d-])\d[\d,]*(?![\d-])", text)]


def test_the_notes_cover_every_state_and_class():
    assert {key for key, _ in DAILY_FIELDS} == {*SUMMARY_STATES, "pending"}
    assert {key for key, _ in MONTHLY_FIELDS} == set(CLASSES)


def test_a_daily_note_carries_each_count_under_its_label():
    note = daily_note(DAY)
    assert note.startswith("**2026-11-21**: reported")
    assert "2,000 records extracted, 1,684 sent by this run" in note
    for key, label in DAILY_FIELDS:
        assert f"- {DAY[key]:,} {label}" in note


def test_a_daily_note_names_what_needs_attention_first():
    note = daily_note(DAY, failed_sources=["vaxreport_source_mariadb"], submit_failed=True)
    first = note.splitlines()[0]
    assert "NEEDS ATTENTION" in first
    assert "vaxreport_source_mariadb" in first
    assert "submission did not finish" in first


def test_a_monthly_note_says_why_it_failed_and_counts_every_class():
    problems = ["3 records missing from the ledger", "unexplained difference 2 against the register (threshold 0)"]
    note = monthly_note(MONTH, problems)
    first = note.splitlines()[0]
    assert first.startswith("**2026-10**: FAILED: 3 records missing")
    assert "threshold 0" in first
    total = sum(MONTH[c] for c in CLASSES)
    assert f"{total:,} source records given in the month" in note
    for key, label in MONTHLY_FIELDS:
        assert f"- {MONTH[key]:,} {label}" in note
    assert "- 2 unexplained difference" in note


def test_a_clean_month_says_so():
    clean = {**MONTH, "missing": 0, "unexplained": 0}
    assert monthly_note(clean, []).splitlines()[0] == "**2026-10**: reconciled, nothing missing"


def test_notes_hold_counts_only_and_fit_airflows_cap():
    # every number in a note is a date part or one of the summary's counts (or their total)
    note = daily_note(DAY)
    allowed = set(DAY.values()) | {2026, 11, 21}
    assert set(_numbers(note)) <= allowed
    many = [f"source_{i:03d}" for i in range(200)]
    assert len(daily_note(DAY, failed_sources=many)) == NOTE_LIMIT
    assert daily_note(DAY, failed_sources=many).endswith("…")
