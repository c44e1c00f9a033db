"""The Airflow UI of `make airflow`, driven by a real browser: an operator's day-one path.

Headless Debian chromium (through Playwright, with the system binary) logs in, triggers
`vaccinations_daily` for one day from the trigger form with the `day` param, waits for the run to
succeed and saves screenshots of the grid view and of the run's note under test-artifacts/ui/.
The deployment is the very launcher `make airflow` runs (SQLite metadata, LocalExecutor, the
emulator), started on free ports with its state in a temporary directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import ARTIFACTS, ROOT, chromium_binary, embedded_environment, free_port

pytestmark = pytest.mark.dags

DAY = date(2026, 11, 18)
RECORDS = 150
SHOTS = ARTIFACTS / "ui"


class LocalAirflow:
    """`python -m vaxreport airflow` as a subprocess, stopped with SIGTERM as Ctrl-C would."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port, self.emulator_port = free_port(), free_port()
        self.env = {
            **os.environ,
            **embedded_environment(tmp / "var"),
            "PYTHONPATH": os.pathsep.join(str(p) for p in (ROOT / "include", ROOT / "plugins", ROOT)),
            # unpausing on trigger would also start the latest scheduled run: only the triggered one here
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        }
        self.home = tmp / "var" / "airflow"
        self.log = tmp / "make-airflow.log"
        self.process: subprocess.Popen | None = None

    def generate(self, day: date, records: int) -> None:
        subprocess.run(
            [sys.executable, "-m", "vaxreport", "generate", "--day", day.isoformat(), "--records", str(records)],
            env=self.env,
            cwd=self.tmp,
            check=True,
            capture_output=True,
            timeout=300,
        )

    def start(self, timeout: float = 420) -> dict[str, str]:
        """Start and wait for the line with the UI address and login; return them."""
        command = [sys.executable, "-m", "vaxreport", "airflow", "--home", str(self.home)]
        command += ["--port", str(self.port), "--emulator-port", str(self.emulator_port)]
        with self.log.open("w") as out:
            self.process = subprocess.Popen(command, env=self.env, cwd=self.tmp, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text()
            found = re.search(r"Airflow UI: (\S+)\s+login: (\S+) / (\S+)", text)
            if found:
                return {"url": found.group(1), "user": found.group(2), "password": found.group(3)}
            if self.process.poll() is not None:
                raise AssertionError(f"make airflow exited {self.process.returncode}:\n{text[-3000:]}")
            time.sleep(1)
        raise AssertionError(f"make airflow printed no UI address within {timeout:.0f} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=240)  # up to 5 components, each given 30 s and more
            except subprocess.TimeoutExpired:
                self.process.kill()

    def save_logs(self) -> Path:
        target = ARTIFACTS / f"ui-browser-{time.strftime('%Y%m%d-%H%M%S')}"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(self.log, target / self.log.name)
        if (self.home / "logs").exists():
            shutil.copytree(self.home / "logs", target / "airflow-logs", dirs_exist_ok=True)
        return target


def _api(login: dict[str, str]) -> httpx.Client:
    token = httpx.post(
        f"{login['url']}/auth/token", json={"username": login["user"], "password": login["password"]}, timeout=10
    )
    token.raise_for_status()
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    return httpx.Client(base_url=login["url"], headers=headers, timeout=30, trust_env=False)


def _wait_for_run(api: httpx.Client, dag_id: str, timeout: float) -> dict:
    """The one manually triggered run of the DAG, once it has finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [r for r in api.get(f"/api/v2/dags/{dag_id}/dagRuns").json()["dag_runs"] if r["run_type"] == "manual"]
        assert len(runs) <= 1, runs
        if runs and runs[0]["state"] in ("success", "failed"):
            return runs[0]
        time.sleep(2)
    raise AssertionError(f"no finished run of {dag_id} within {timeout:.0f} s: {runs}")


def summary_of(note: str) -> str:
    """The extracted count as the note states it ("1,234 records extracted, ...")."""
    found = re.search(r"([\d,]+) records extracted", note)
    assert found, note
    return found.group(1)


def _trigger_and_screenshot(page, api: httpx.Client, login: dict[str, str]) -> dict:
    """Log in, trigger the day from the trigger form, wait for the run, photograph grid and note."""
    page.goto(f"{login['url']}/")
    page.get_by_label("Username").fill(login["user"])
    page.get_by_label("Password").fill(login["password"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{login['url']}/")

    page.goto(f"{login['url']}/dags/vaccinations_daily")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    dialog.locator("#element_day").fill(DAY.isoformat())
    dialog.get_by_role("button", name="Trigger").last.click()

    run = _wait_for_run(api, "vaccinations_daily", timeout=600)
    page.goto(f"{login['url']}/dags/vaccinations_daily")
    page.get_by_text("write_rejection_report").first.wait_for()
    page.wait_for_load_state("networkidle")
    page.screenshot(path=SHOTS / "grid.png", full_page=True, animations="disabled")

    path = f"/dags/vaccinations_daily/runs/{quote(run['dag_run_id'], safe='')}"
    note = api.get(f"/api/v2{path.replace('/runs/', '/dagRuns/')}").json()["note"]
    assert note, "the run has no note"
    assert DAY.isoformat() in note, note
    page.goto(f"{login['url']}{path}")
    page.get_by_role("button", name="Edit note").click()  # the header shows only its first line
    shown = page.get_by_role("dialog")
    shown.get_by_text("records extracted").first.wait_for()
    assert f"{summary_of(note)} records extracted" in shown.inner_text()
    page.screenshot(path=SHOTS / "run-note.png", full_page=True, animations="disabled")
    return run


def test_operator_triggers_a_day_in_the_ui_and_reads_the_run_note(tmp_path):
    from playwright.sync_api import sync_playwright

    chromium = chromium_binary()
    airflow = LocalAirflow(tmp_path)
    airflow.generate(DAY, RECORDS)
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):  # what is there is this run's
        old.unlink()
    failed = True
    try:
        login = airflow.start()
        api = _api(login)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.set_default_timeout(60_000)
            try:
                run = _trigger_and_screenshot(page, api, login)
            except BaseException:
                page.screenshot(path=SHOTS / "failure.png", full_page=True)
                raise
            finally:
                browser.close()
        assert run["state"] == "success", run
        assert run["conf"] == {"day": DAY.isoformat(), "dry_run": False}
        for shot in ("grid.png", "run-note.png"):
            assert (SHOTS / shot).stat().st_size > 10_000, f"{shot} looks empty"
        summary = json.loads((tmp_path / "var" / "reports" / DAY.isoformat() / "summary.json").read_text())
        assert summary["extracted"] == RECORDS, summary
        assert summary["pending"] == 0, summary
        assert 0 < summary["accepted"] <= summary["sent"], summary
        failed = False
    finally:
        airflow.stop()
        if failed:
            print(f"make airflow logs saved to {airflow.save_logs()}", file=sys.stderr)
    assert airflow.process.returncode == 0, airflow.log.read_text()[-2000:]
