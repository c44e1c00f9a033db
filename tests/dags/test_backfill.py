"""Backfill on a real Airflow deployment: five days reported once each, then the same range again;
each run's note in the UI carries its day's counts; the reports page is served inside the
api-server behind its own login; a month with a record lost from the ledger turns the monthly
reconciliation red with a note that says why.

Unlike `dag.test()`, this runs the DAG the way production does: `airflow backfill create` makes the
runs, the scheduler (LocalExecutor) executes them, task processes talk to the api-server's
execution API, the metadata lives in PostgreSQL (see `airflow_stack.py`).

A run without the `day` param reports the Stockholm day before its logical date (schedule
`0 2 * * *` Europe/Stockholm), so reporting days D1..D5 means backfilling logical dates
D1+1..D5+1 at 02:00.

Timings on the 2-core development machine (5 passing runs): PostgreSQL database, migration and
the three components ready 14-24 s; first backfill (5 runs of 6 task instances, one run at a
time) 64-86 s; waiting for the scheduler to mark it completed (it checks every 30 s) 8-24 s;
second backfill 42-61 s; the whole test 150-200 s.
"""

import json
import time as clock
from collections import Counter
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import embedded_environment, start_emulator
from tests.dags.airflow_stack import airflow_stack
from tests.dags.conftest import lose_one_accepted_record

pytestmark = [pytest.mark.dags, pytest.mark.slow]
STOCKHOLM = ZoneInfo("Europe/Stockholm")
DAG_ID = "vaccinations_daily"
MONTHLY = "vaccinations_monthly_reconciliation"
REPORTS_LOGIN = ("analyst", "reports-pass-1")
N_DAYS = 5
RECORDS = 300
TERMINAL = ("excluded", "rejected_local", "accepted", "duplicate", "rejected_register", "failed")
SENT_STATES = {"accepted", "duplicate", "rejected_register"}  # the states a record reaches only by being sent
BACKFILL_TIMEOUT_S = 600
PIPELINE_TASKS = {
    "extract_vaccinations",
    "validate_records",
    "build_bundles",
    "submit_bundles",
    "finish_submission",
    "write_rejection_report",
}


def _days() -> list[date]:
    # days of the recent past, so every logical date is before now (a backfill only creates runs
    # whose time has come) and the emulator, whose "today" is the real one, sees no future dates
    first = datetime.now(STOCKHOLM).date() - timedelta(days=12)
    return [first + timedelta(days=i) for i in range(N_DAYS)]


def _ledger_states(home) -> dict[str, tuple[str, tuple[str, str | None]]]:
    ledger = sa.create_engine(f"sqlite:///{home / 'ledger.sqlite'}")
    try:
        with ledger.connect() as conn:
            rows = conn.execute(sa.text("SELECT source_record_id, window_day, state, code FROM record_versions"))
            return {r.source_record_id: (r.window_day, (r.state, r.code)) for r in rows}
    finally:
        ledger.dispose()


def _lose_in(home, month: str) -> str:
    ledger = sa.create_engine(f"sqlite:///{home / 'ledger.sqlite'}")
    try:
        return lose_one_accepted_record(ledger, month)
    finally:
        ledger.dispose()


def _summary(home, day: date) -> dict:
    return json.loads((home / "reports" / day.isoformat() / "summary.json").read_text())


def test_backfill_reports_each_record_once_and_a_second_backfill_sends_nothing(tmp_path):
    from vaxreport.reports.run_notes import daily_note
    from vaxreport.sources import embedded
    from vaxreport.synthetic.generate import generate_day

    started = clock.monotonic()
    timings: dict[str, float] = {}
    emulator = start_emulator(tmp_path, "--db", str(tmp_path / "register.sqlite"))
    try:
        home = tmp_path / "var"
        home.mkdir()
        source = sa.create_engine(f"sqlite:///{home / 'source.sqlite'}")
        days = _days()
        truth: dict[str, tuple[str, str | None]] = {}
        day_of: dict[str, date] = {}
        for n, day in enumerate(days):
            embedded.write_day(source, generate_day(day, records=RECORDS, seed=50 + n), day)
            day_truth = embedded.ground_truth(source, day)
            assert len(day_truth) == RECORDS
            truth.update(day_truth)
            day_of.update(dict.fromkeys(day_truth, day))
        source.dispose()
        accepted = {rid for rid, (state, _) in truth.items() if state == "accepted"}
        to_send = {rid for rid, (state, _) in truth.items() if state in SENT_STATES}

        env = {**embedded_environment(home, emulator.base_url), "VAXREPORT_REPORTS_USERS": ":".join(REPORTS_LOGIN)}
        with airflow_stack(
            tmp_path, env, name="backfill", dag_ids=(DAG_ID, MONTHLY), extra_logs=[emulator.log_path]
        ) as af:
            timings["stack up"] = clock.monotonic() - started
            af.unpause(DAG_ID)
            from_date = datetime.combine(days[0] + timedelta(days=1), time(0), STOCKHOLM)
            to_date = datetime.combine(days[-1] + timedelta(days=1), time(12), STOCKHOLM)

            # -- first backfill: the five days are reported ------------------------------------
            t0 = clock.monotonic()
            first = af.create_backfill(DAG_ID, from_date, to_date, max_active_runs=1)
            runs = af.wait_for_backfill_runs(first, BACKFILL_TIMEOUT_S)
            timings["first backfill"] = clock.monotonic() - t0
            assert [r["state"] for r in runs] == ["success"] * N_DAYS, runs
            reported = [r["logical_date"].astimezone(STOCKHOLM).date() - timedelta(days=1) for r in runs]
            assert reported == days
            assert {r["logical_date"].astimezone(STOCKHOLM).time() for r in runs} == {time(2)}

            # the ledger: every record of every day in its ground-truth state, nothing else
            ledger = _ledger_states(home)
            assert ledger.keys() == truth.keys()
            wrong = {
                rid: {"ledger": ledger[rid], "truth": (day_of[rid].isoformat(), truth[rid])}
                for rid in truth
                if ledger[rid] != (day_of[rid].isoformat(), truth[rid])
            }
            assert wrong == {}

            # the register: exactly the accepted records, each once, each stored once (version 1)
            held = emulator.immunizations()
            counts = Counter(i["identifier_value"] for i in held)
            assert [rid for rid, n in counts.items() if n > 1] == []
            assert set(counts) == accepted
            assert all(not i["deleted"] and i["version"] == 1 for i in held)
            stats = emulator.stats()
            assert stats["immunizations"] == len(accepted)
            # every record that had to be sent was processed exactly once: one entry each, no
            # conditional create that found its record already there
            assert stats["entries"] == len(to_send)
            assert stats["by_outcome"].get("CREATED", 0) == len(accepted)
            assert "DUPLICATE-IDENTIFIER" not in stats["by_outcome"]
            assert stats["posts"] > 0
            summaries = {day: _summary(home, day) for day in days}
            assert sum(s["sent"] for s in summaries.values()) == len(to_send)

            # each run's note, read back through the REST API the UI uses, carries its day's counts
            for run, day in zip(runs, days, strict=True):
                note = af.run_note(DAG_ID, run["run_id"])
                assert note == daily_note(summaries[day])
                accepted_that_day = sum(1 for rid in accepted if day_of[rid] == day)
                assert f"\n- {accepted_that_day:,} accepted\n" in note
                assert f"{RECORDS:,} records extracted" in note

            # the reports page is mounted in the api-server, guarded by its own login
            assert httpx.get(f"{af.api_url}/vaxreport/", timeout=10).status_code == 401
            assert httpx.get(f"{af.api_url}/vaxreport/", auth=("analyst", "wrong"), timeout=10).status_code == 403
            page = httpx.get(f"{af.api_url}/vaxreport/", auth=REPORTS_LOGIN, timeout=10)
            assert page.status_code == 200
            assert all(f"<strong>{day.isoformat()}</strong>" in page.text for day in days)
            plugins = af.api("GET", "/api/v2/plugins").json()["plugins"]
            views = [v for p in plugins if p["name"] == "vaxreport" for v in p["external_views"]]
            assert [v["href"] for v in views] == ["/vaxreport/"]  # the UI's menu entry

            # -- second backfill over the same range: every run re-executes, nothing is sent ----
            t0 = clock.monotonic()
            af.wait_for_backfill_completed(first)  # the scheduler marks it within 30 s
            timings["first backfill marked completed"] = clock.monotonic() - t0
            t0 = clock.monotonic()
            second = af.create_backfill(DAG_ID, from_date, to_date, max_active_runs=1, reprocess_behavior="completed")
            assert second != first
            rerun = af.wait_for_backfill_runs(second, BACKFILL_TIMEOUT_S)
            timings["second backfill"] = clock.monotonic() - t0
            assert [r["state"] for r in rerun] == ["success"] * N_DAYS, rerun
            assert [r["run_id"] for r in rerun] == [r["run_id"] for r in runs]  # cleared and run again
            tis = af.query(
                "SELECT task_id, map_index, state, try_number FROM task_instance"
                " WHERE dag_id = %s AND run_id = ANY(%s)",
                (DAG_ID, [r["run_id"] for r in rerun]),
            )
            assert {t[0] for t in tis} >= PIPELINE_TASKS
            # every task instance of every run really executed a second time (fail_run, the
            # watcher that turns a run red, is skipped when nothing failed)
            assert [t for t in tis if t[3] < 2 and t[0] != "fail_run"] == []
            assert {t[2] for t in tis if t[0] == "fail_run"} == {"skipped"}

            # not a single POST: the register's counters and records are exactly as before
            assert emulator.stats() == stats
            assert emulator.immunizations() == held
            assert _ledger_states(home) == ledger
            for day in days:
                again = _summary(home, day)
                assert again["sent"] == 0
                assert {k: again[k] for k in TERMINAL} == {k: summaries[day][k] for k in TERMINAL}
            for run, day in zip(rerun, days, strict=True):
                assert af.run_note(DAG_ID, run["run_id"]) == daily_note(_summary(home, day))

            # -- the month: one accepted record lost from the ledger turns the reconciliation red --
            month = days[0].replace(day=1)
            label = month.isoformat()[:7]
            lost = _lose_in(home, label)
            t0 = clock.monotonic()
            af.unpause(MONTHLY)
            run_id = af.trigger(MONTHLY, {"month": label})
            assert af.wait_for_run(MONTHLY, run_id, BACKFILL_TIMEOUT_S) == "failed"
            timings["monthly reconciliation"] = clock.monotonic() - t0
            tis = af.query(
                "SELECT task_id, state FROM task_instance WHERE dag_id = %s AND run_id = %s", (MONTHLY, run_id)
            )
            assert dict(tis) == {"apply_register_findings": "success", "reconcile_month": "failed"}
            note = af.run_note(MONTHLY, run_id)
            assert note.splitlines()[0].startswith(f"**{label}**: FAILED: 1 records missing from the ledger"), note
            assert "\n- 1 MISSING from the ledger\n" in note
            assert lost not in note  # counts only
    finally:
        emulator.stop()
        timings["total"] = clock.monotonic() - started
        print("timings:", {k: round(v) for k, v in timings.items()})
