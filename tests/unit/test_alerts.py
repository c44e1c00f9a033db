"""The alert texts (vaxreport.alerts) and the client-secret expiry check (vaxreport.secret_expiry).

An alert leaves the installation, so the tests feed personnummer into every place one could come
in (an exception's text, a problem line, a task label, a run id) and look for any in the output.
The numbers are Skatteverket's published test personnummer (/work/shared/data), no one's.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from vaxreport import secret_expiry
from vaxreport.alerts import (
    INSTRUCTION,
    deadline_alert,
    failed_run_alert,
    reconciliation_alert,
    scrub,
    secret_expiry_alert,
)

pytestmark = pytest.mark.unit

# Skatteverket test personnummer (CC0), from /work/shared/data/skatteverket-testpersonnummer.txt
TEST_PNR = ["189001019802", "189001029819", "189001039800"]
PNR_FORMS = [
    *TEST_PNR,
    *(p[2:] for p in TEST_PNR),  # 10 digits
    *(f"{p[2:8]}-{p[8:]}" for p in TEST_PNR),  # YYMMDD-NNNC
    *(f"{p[2:8]}+{p[8:]}" for p in TEST_PNR),  # aged 100 or more
    *(f"{p[:8]}-{p[8:]}" for p in TEST_PNR),  # YYYYMMDD-NNNC
]
TWELVE_DIGITS = re.compile(r"(?<!\d)\d{12}(?!\d)")
PNR_SHAPED = re.compile(r"(?<![\d-])(?:\d{12}|\d{10}|\d{6}[-+]\d{4}|\d{8}[-+]\d{4})(?!\d)")


def assert_no_person_id(*texts: str) -> None:
    for text in texts:
        assert TWELVE_DIGITS.findall(text) == [], text
        assert PNR_SHAPED.findall(text) == [], text
        assert not [p for p in PNR_FORMS if p in text], text


def everything(alert) -> str:
    return alert.subject + "\n" + alert.text + "\n" + json.dumps(alert.payload(), ensure_ascii=False)


def test_the_test_numbers_are_skatteverkets() -> None:
    listed = Path("/work/shared/data/skatteverket-testpersonnummer.txt")
    if not listed.exists():
        pytest.skip("the shared Skatteverket list is not available here")
    assert set(TEST_PNR) <= set(listed.read_text().split())


def test_failed_run_alert_names_dag_run_day_tasks_state_and_what_to_do() -> None:
    alert = failed_run_alert(
        dag_id="vaccinations_daily",
        run_id="scheduled__2026-11-20T01:00:00+00:00",
        logical_date=datetime(2026, 11, 20, 1, tzinfo=UTC),
        day=date(2026, 11, 19),
        failed_tasks=["validate_records", "extract_vaccinations[1]", "validate_records"],
        reason="task_failure",
    )
    assert alert.kind == "run_failed"
    assert alert.subject == "[vaxreport] vaccinations_daily failed: extract_vaccinations[1], validate_records"
    assert alert.text.splitlines() == [
        "vaxreport: vaccinations_daily run scheduled__2026-11-20T01:00:00+00:00 is failed.",
        "Logical date: 2026-11-20T01:00:00+00:00; day: 2026-11-19.",
        "Failed tasks: extract_vaccinations[1], validate_records.",
        "Reason: task_failure.",
        INSTRUCTION,
    ]
    assert "http" not in alert.text  # link-free: the receiver may not reach the UI's address
    payload = alert.payload()
    assert payload["dag_id"] == "vaccinations_daily"
    assert payload["failed_tasks"] == ["extract_vaccinations[1]", "validate_records"]
    assert payload["day"] == "2026-11-19"
    assert payload["text"] == alert.text
    json.dumps(payload)  # JSON-able as it is


def test_failed_run_alert_without_known_tasks_still_says_where_to_look() -> None:
    alert = failed_run_alert("vaccinations_weekly_digest", "manual__x", None, None, [])
    assert "Failed tasks: (unknown: see the run in the Airflow UI)." in alert.text
    assert "Logical date: none; day: none." in alert.text


@pytest.mark.parametrize("pnr", PNR_FORMS)
def test_no_personnummer_leaks_from_any_input(pnr: str) -> None:
    error = ValueError(f"row for patient {pnr} could not be parsed: personnummer={pnr}")
    failed = failed_run_alert(
        dag_id="vaccinations_daily",
        run_id=f"manual__{pnr}",
        logical_date=f"2026-11-20 {pnr}",
        day=date(2026, 11, 19),
        failed_tasks=[f"extract_vaccinations[{pnr}]"],
        reason=f"task failed for {pnr}",
        error=error,
    )
    assert "Error: ValueError: row for patient [person-id] could not be parsed" in failed.text
    found = reconciliation_alert(
        "vaccinations_monthly_reconciliation",
        "manual__2026-10-02",
        "2026-09",
        {"missing": 1, "accepted": 10},
        [f"1 records missing from the ledger ({pnr})"],
    )
    late = deadline_alert("vaccinations_daily", f"scheduled__{pnr}", None, "06:00 Europe/Stockholm", "running")
    assert_no_person_id(everything(failed), everything(found), everything(late))


def test_scrub_keeps_dates_counts_and_person_keys() -> None:
    text = "run 2026-11-20T01:00:00+00:00: accepted=1690 rejected=139 person_key=3fa85f64b1c2d3e4"
    assert scrub(text) == text
    assert scrub("x" * 500).endswith("…")
    assert len(scrub("x" * 500)) == 300


def test_reconciliation_alert_counts_each_class_and_says_why() -> None:
    counts = {
        "missing": 1,
        "accepted": 287,
        "duplicate": 3,
        "rejected_local": 9,
        "rejected_register": 0,
        "excluded": 4,
        "voided": 0,
        "failed_or_pending": 2,
        "unexplained": 1,
        "report": "/somewhere/var/reports/reconciliation/2026-09/index.html",
    }
    alert = reconciliation_alert(
        "vaccinations_monthly_reconciliation", "manual__r", "2026-09", counts, ["1 records missing from the ledger"]
    )
    assert alert.kind == "reconciliation_finding"
    assert alert.subject == "[vaxreport] reconciliation 2026-09: 1 missing, 1 unexplained"
    assert "Findings: 1 records missing from the ledger." in alert.text
    assert (
        "Records per class: missing=1, accepted=287, duplicate=3, rejected_local=9, rejected_register=0,"
        " excluded=4, voided=0, failed_or_pending=2; unexplained=1." in alert.text
    )
    assert alert.payload()["counts"] == {k: v for k, v in counts.items() if k != "report"}
    assert "/somewhere" not in everything(alert)  # no server paths either: the report is named relative


def test_deadline_alert_says_what_was_late_and_its_state() -> None:
    alert = deadline_alert(
        "vaccinations_daily",
        "scheduled__2026-11-20T01:00:00+00:00",
        "2026-11-20T01:00:00Z",
        "06:00 Europe/Stockholm",
        "running",
    )
    assert alert.kind == "deadline_missed"
    assert alert.subject == "[vaxreport] vaccinations_daily not finished by 06:00 Europe/Stockholm"
    assert "had not finished by 06:00 Europe/Stockholm" in alert.text
    assert "state at the deadline: running" in alert.text
    assert INSTRUCTION in alert.text


# -- client secret expiry ------------------------------------------------------------------------

TODAY = date(2026, 11, 20)


def extra_expiring_in(days: int) -> dict:
    return {
        "token_url": "https://register.example/oauth2/token",
        "client_secret_expires": (TODAY + timedelta(days)).isoformat(),
    }


@pytest.mark.parametrize(
    ("days", "status", "alert"),
    [
        (365, "ok", False),
        (31, "ok", False),
        (30, "expiring", True),
        (29, "expiring", True),
        (1, "expiring", True),
        (0, "expired", True),  # the expiry day itself: the hour is not known
        (-1, "expired", True),
        (-40, "expired", True),  # every day after, until rotated
    ],
)
def test_expiry_warns_from_30_days_before_and_every_day_after(days: int, status: str, alert: bool) -> None:
    expiry = secret_expiry.check(extra_expiring_in(days), TODAY)
    assert expiry.status == status
    assert expiry.days_left == days
    assert expiry.expires == TODAY + timedelta(days)
    assert expiry.should_alert is alert


def test_expiry_messages_name_the_date_and_how_to_rotate() -> None:
    soon = secret_expiry.check(extra_expiring_in(30), TODAY)
    line = secret_expiry.log_line(soon, "nvr_api")
    assert "expires on 2026-12-20 (30 days left)" in line
    assert "client_secret_expires" in line
    gone = secret_expiry.check(extra_expiring_in(-1), TODAY)
    assert "EXPIRED on 2026-11-19" in secret_expiry.log_line(gone, "nvr_api")
    alert = secret_expiry_alert("nvr_api", 30, date(2026, 12, 20))
    assert alert.subject == "[vaxreport] register client secret expires in 30 days"
    assert "update the connection's password and its extra field client_secret_expires (YYYY-MM-DD)" in alert.text
    assert (
        secret_expiry_alert("nvr_api", 0, TODAY).subject == "[vaxreport] register client secret expired on 2026-11-20"
    )
    assert secret_expiry.log_line(secret_expiry.check(extra_expiring_in(31), TODAY), "nvr_api").startswith(
        "register client secret of connection nvr_api valid until 2026-12-21"
    )


@pytest.mark.parametrize("extra", [None, {}, {"client_secret_expires": ""}, {"client_secret_expires": "  "}])
def test_a_missing_date_is_a_warning_naming_the_field_and_format(extra) -> None:
    expiry = secret_expiry.check(extra, TODAY)
    assert expiry.status == "missing"
    assert not expiry.should_alert
    line = secret_expiry.log_line(expiry, "nvr_api")
    assert "'client_secret_expires'" in line
    assert "YYYY-MM-DD" in line


@pytest.mark.parametrize(
    "value", ["2027-02-30", "20.11.2027", "2027/11/20", "2027-W47-1", "next year", "20271120", 20271120]
)
def test_a_malformed_date_is_a_warning_naming_the_field_and_format(value) -> None:
    expiry = secret_expiry.check({"client_secret_expires": value}, TODAY)
    assert expiry.status == "malformed"
    assert not expiry.should_alert
    line = secret_expiry.log_line(expiry, "nvr_api")
    assert "'client_secret_expires'" in line
    assert "YYYY-MM-DD" in line
