"""Alerts end to end: a run that really fails calls the notifier, and a webhook receiver on
127.0.0.1 gets the alert, naming the DAG, the run and the failed task, with no personal data.

The DAGs run with `dag.test()` in a fresh process, as in test_daily_dag_run.py; a task's
`on_failure_callback` runs in the task's own process there exactly as on a worker. Retries are
switched off in the runner only: they are 5 and 15 minutes apart, and the test is about what happens
once a run has failed for good.
"""

from __future__ import annotations

import email
import html
import json
import re
import socketserver
import subprocess
import sys
import threading
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa

from tests.conftest import ROOT, embedded_environment, free_port
from tests.dags.conftest import airflow_environment, lose_one_accepted_record

pytestmark = [pytest.mark.dags, pytest.mark.slow]
DAY = date(2026, 11, 19)
PNR_SHAPED = re.compile(r"(?<![\d-])(?:\d{12}|\d{10}|\d{6}[-+]\d{4}|\d{8}[-+]\d{4})(?!\d)")

RUNNER = """
import json, sys
from datetime import UTC, datetime
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
if bag.import_errors:
    raise SystemExit(f"import errors: {bag.import_errors}")
dag = bag.get_dag(sys.argv[2])
for t in dag.tasks:
    t.retries = 0
run = dag.test(logical_date=datetime.now(UTC), run_conf=json.loads(sys.argv[3]))
print("DAGRUN", run.state, run.run_id)
"""


class Receiver:
    """A webhook receiver on 127.0.0.1: keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.raw: list[str] = []
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                received.raw.append(raw)
                received.bodies.append(json.loads(raw))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/vaxreport"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def connection(self) -> str:
        return json.dumps({"conn_type": "http", "host": self.url})

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def run_dag(airflow_home, env: dict, dag_id: str, conf: dict) -> tuple[str, str, str]:
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, str(ROOT / "dags"), dag_id, json.dumps(conf)],
        env={**airflow_environment(airflow_home), **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("DAGRUN ")), None)
    assert line, output[-4000:]
    _, state, run_id = line.split(" ", 2)
    return state, run_id, output


def assert_no_person_id(text: str, persons: set[str]) -> None:
    assert PNR_SHAPED.findall(text) == []
    forms = persons | {p[2:] for p in persons} | {f"{p[2:8]}-{p[8:]}" for p in persons}
    assert not [p for p in forms if p in text]


def write_source(home, records: int, seed: int) -> set[str]:
    """A day of synthetic records (with personnummer) in the embedded source; returns the persons."""
    from vaxreport.sources import embedded
    from vaxreport.synthetic.generate import generate_day

    home.mkdir(parents=True, exist_ok=True)
    generated = generate_day(DAY, records=records, seed=seed)
    embedded.write_day(sa.create_engine(f"sqlite:///{home / 'source.sqlite'}"), generated, DAY)
    return {r.patient_id for r in generated}


def test_a_failing_daily_run_sends_one_alert_naming_dag_run_and_failed_task(tmp_path, airflow_home, receiver):
    home = tmp_path / "var"
    persons = write_source(home, records=40, seed=7)
    # the register on a port nothing listens on: no catalog can be fetched, validation fails for real
    dead_register = f"http://127.0.0.1:{free_port()}"
    env = embedded_environment(home, dead_register)
    env["AIRFLOW_CONN_NVR_API"] = json.dumps(
        {
            "conn_type": "http",
            "host": dead_register,
            "login": "vaxreport-dev",
            "password": "dev-secret",
            "extra": {"max_attempts": 1, "timeout_s": 2, "time_budget_s": 20},
        }
    )
    env["AIRFLOW_CONN_VAXREPORT_ALERTS"] = receiver.connection()

    state, run_id, log = run_dag(airflow_home, env, "vaccinations_daily", {"day": DAY.isoformat()})

    # the report still ran (all_done); fail_run, the leaf watching every task, turned the run red
    assert state == "failed", log[-4000:]
    with sa.create_engine(f"sqlite:///{airflow_home / 'airflow.db'}").connect() as conn:
        failed_tis = sorted(
            t if i < 0 else f"{t}[{i}]"
            for t, i in conn.execute(
                sa.text("SELECT task_id, map_index FROM task_instance WHERE run_id = :r AND state = 'failed'"),
                {"r": run_id},
            )
        )
    assert "validate_records" in failed_tis, log[-4000:]
    assert "fail_run" in failed_tis, log[-4000:]
    assert [b["kind"] for b in receiver.bodies] == ["run_failed"] * len(failed_tis), (receiver.bodies, failed_tis)
    # one alert per failed task; fail_run's, the run's own, names every task that failed before it
    [run_alert] = [b for b in receiver.bodies if "failed in this run: " in b["text"]]
    assert run_alert["failed_tasks"] == [t for t in failed_tis if t != "fail_run"]
    assert "validate_records" in run_alert["failed_tasks"]
    per_task = [b for b in receiver.bodies if b is not run_alert]
    assert sorted(t for b in per_task for t in b["failed_tasks"]) == [t for t in failed_tis if t != "fail_run"]
    alert = next(b for b in per_task if b["failed_tasks"] == ["validate_records"])
    assert alert["dag_id"] == "vaccinations_daily"
    assert alert["run_id"] == run_id
    assert alert["day"] == DAY.isoformat()
    assert alert["state"] == "failed"
    assert f"vaccinations_daily run {run_id} is failed." in alert["text"]
    assert alert["subject"] == "[vaxreport] vaccinations_daily failed: validate_records"
    assert "Error: RegistryUnavailable: token: ConnectError" in alert["text"]
    assert "See the run's note and the task log in the Airflow UI." in alert["text"]
    for raw in receiver.raw:
        assert_no_person_id(raw, persons)
    assert "alert sent through vaxreport_alerts" in log


def test_a_failing_run_without_an_alert_connection_still_ends_as_it_would(tmp_path, airflow_home):
    """No `vaxreport_alerts`: the run ends failed for its own reason, with one warning, no crash."""
    env = embedded_environment(tmp_path / "var", f"http://127.0.0.1:{free_port()}")
    env["VAXREPORT_HOME"] = str(tmp_path / "var")
    env["VAXREPORT_REPORTS_DIR"] = str(tmp_path / "no-such-dir" / "reports")
    # a weekly digest over a ledger that is a directory: it cannot be opened, the task fails for real
    (tmp_path / "ledger-is-a-dir").mkdir()
    env["AIRFLOW_CONN_VAXREPORT_DB"] = json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "ledger-is-a-dir")})
    env.pop("AIRFLOW_CONN_VAXREPORT_ALERTS", None)

    state, _, log = run_dag(airflow_home, env, "vaccinations_weekly_digest", {"day": DAY.isoformat()})

    assert state == "failed", log[-4000:]
    assert log.count("alert not sent (no connection 'vaxreport_alerts')") == 1, log[-4000:]
    assert "[vaxreport] vaccinations_weekly_digest failed: write_rejection_digest" in log
    assert "Callback failed" not in log


def test_a_reconciliation_gap_sends_the_counts_per_class(tmp_path, airflow_home, emulator, receiver, monkeypatch):
    from vaxreport.pipeline import Runtime, run_day
    from vaxreport.synthetic.seed import generate_into

    home = tmp_path / "var"
    env = embedded_environment(home, emulator.base_url)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    rt = Runtime()
    day = date(2026, 9, 10)
    generate_into(rt, "vaxreport_source_embedded", day, records=120, seed=3)
    run_day(rt, day)
    lose_one_accepted_record(rt.ledger(), "2026-09")
    with rt.ledger().connect() as conn:
        persons = {r[0] for r in conn.execute(sa.text("SELECT DISTINCT person_id FROM record_versions"))}
    env["AIRFLOW_CONN_VAXREPORT_ALERTS"] = receiver.connection()

    state, run_id, log = run_dag(airflow_home, env, "vaccinations_monthly_reconciliation", {"month": "2026-09"})

    assert state == "failed", log[-4000:]
    assert [b["kind"] for b in receiver.bodies] == ["reconciliation_finding", "run_failed"], log[-3000:]
    finding, failed = receiver.bodies
    assert finding["run_id"] == run_id
    assert finding["month"] == "2026-09"
    assert finding["counts"]["missing"] == 1
    assert set(finding["counts"]) == {
        "missing",
        "accepted",
        "duplicate",
        "rejected_local",
        "rejected_register",
        "excluded",
        "voided",
        "failed_or_pending",
        "unexplained",
    }
    assert finding["counts"]["accepted"] > 0
    assert "1 records missing from the ledger" in finding["problems"]
    assert "missing=1" in finding["text"]
    assert failed["failed_tasks"] == ["reconcile_month"]
    assert failed["run_id"] == run_id
    for raw in receiver.raw:
        assert_no_person_id(raw, {p for p in persons if p})


DIRECT = """
import json
from datetime import date
from vaxreport_airflow import alerts

today = date(2026, 11, 20)
out = {}
out["scheduled"] = alerts.deadline_missed(
    context={"dag_run": {"dag_id": "vaccinations_daily", "run_id": "scheduled__2026-11-20T01:00:00+00:00",
                         "run_type": "scheduled", "logical_date": "2026-11-20T01:00:00Z", "state": "running"},
             "deadline": {"id": "x", "deadline_time": "2026-11-20T05:00:00Z"}},
    deadline="06:00 Europe/Stockholm")
alerts.deadline_missed(
    context={"dag_run": {"dag_id": "vaccinations_daily", "run_id": "backfill__2026-10-01T00:00:00+00:00",
                         "run_type": "backfill", "logical_date": "2026-10-01T00:00:00Z", "state": "running"}})
out["secret"] = alerts.check_client_secret("nvr_api", today=today)
out["secret_later"] = alerts.check_client_secret("nvr_api", today=date(2026, 10, 1))
out["secret_bad"] = alerts.check_client_secret("nvr_bad_date", today=today)
out["missing_1"] = alerts.send(alerts.failed_run_alert_from({"run_id": "r"}), "vaxreport_alerts_absent")
out["missing_2"] = alerts.send(alerts.failed_run_alert_from({"run_id": "r"}), "vaxreport_alerts_absent")
print("OUT" + json.dumps(out))
"""


def test_the_deadline_and_secret_callbacks_send_through_the_same_notifier(tmp_path, airflow_home, receiver):
    """The deadline callback as the executor calls it (the run as JSON), the daily secret check on
    both sides of its 30 days and with a malformed date, and a missing connection warned once."""
    env = {
        **airflow_environment(airflow_home),
        "AIRFLOW_CONN_VAXREPORT_ALERTS": receiver.connection(),
        "AIRFLOW_CONN_NVR_API": json.dumps(
            {
                "conn_type": "http",
                "host": "http://127.0.0.1:9",
                "login": "id",
                "password": "s3cret-value",
                "extra": {"client_secret_expires": "2026-12-10"},
            }
        ),
        "AIRFLOW_CONN_NVR_BAD_DATE": json.dumps(
            {"conn_type": "http", "host": "http://127.0.0.1:9", "extra": {"client_secret_expires": "10/12/2026"}}
        ),
    }
    result = subprocess.run([sys.executable, "-c", DIRECT], env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("OUT")), None)
    assert line, output[-4000:]
    out = json.loads(line[3:])

    kinds = [b["kind"] for b in receiver.bodies]
    assert kinds == ["deadline_missed", "secret_expiry"], output[-3000:]
    deadline, secret = receiver.bodies
    assert deadline["run_id"] == "scheduled__2026-11-20T01:00:00+00:00"
    assert deadline["deadline"] == "06:00 Europe/Stockholm"
    assert deadline["state"] == "running"
    assert "not finished by 06:00 Europe/Stockholm" in deadline["subject"]
    assert "deadline passed for backfill run backfill__2026-10-01T00:00:00+00:00; not alerted" in output

    assert out["secret"] == {"status": "expiring", "days_left": 20, "alert_sent": True}
    assert secret["days_left"] == 20
    assert secret["expires"] == "2026-12-10"
    assert "s3cret-value" not in json.dumps(receiver.bodies)
    assert out["secret_later"] == {"status": "ok", "days_left": 70, "alert_sent": False}
    assert out["secret_bad"] == {"status": "malformed", "days_left": None, "alert_sent": False}
    assert re.search(
        r"\[warning\s*\] connection nvr_bad_date: extra field 'client_secret_expires' is not a date in the format"
        r" YYYY-MM-DD",
        output,
    ), output[-3000:]

    assert out["missing_1"] is False
    assert out["missing_2"] is False
    assert output.count("alert not sent (no connection 'vaxreport_alerts_absent')") == 1


class SmtpSink:
    """An SMTP server on 127.0.0.1 that keeps every message it is given (no TLS, no auth)."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, text: str) -> None:
                self.wfile.write(text.encode() + b"\r\n")

            def handle(self) -> None:
                self.reply("220 sink ESMTP")
                data: list[bytes] | None = None
                while line := self.rfile.readline():
                    if data is not None:
                        if line.rstrip(b"\r\n") == b".":
                            sink.messages.append(b"".join(data).decode("utf-8", "replace"))
                            data = None
                            self.reply("250 OK: queued")
                        else:
                            data.append(line[1:] if line.startswith(b"..") else line)
                        continue
                    verb = line[:4].upper()
                    if verb == b"EHLO":
                        self.reply("250 sink")
                    elif verb == b"DATA":
                        data = []
                        self.reply("354 end with <CRLF>.<CRLF>")
                    elif verb == b"QUIT":
                        self.reply("221 bye")
                        return
                    else:  # HELO, MAIL FROM, RCPT TO, RSET, NOOP
                        self.reply("250 OK")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def connection(self, to: str) -> str:
        extra = {"to": to, "from_email": "vaxreport@region.example", "disable_ssl": True, "disable_tls": True}
        return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": self.port, "extra": extra})

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


MAIL = """
import json
from vaxreport_airflow import alerts
context = {"run_id": "manual__2026-11-20T09:00:00+00:00", "exception": ValueError("bad row for 199001012385")}
print("OUT" + json.dumps(alerts.send(alerts.failed_run_alert_from(context))))
"""


def test_an_alert_goes_out_by_mail_through_the_smtp_provider(airflow_home):
    """The SMTP path of the same notifier: the provider's SmtpNotifier delivers to a local sink."""
    sink = SmtpSink()
    try:
        env = {
            **airflow_environment(airflow_home),
            "AIRFLOW_CONN_VAXREPORT_ALERTS": sink.connection("ops@region.example"),
        }
        result = subprocess.run([sys.executable, "-c", MAIL], env=env, capture_output=True, text=True, timeout=300)
        output = result.stdout + result.stderr
        assert "OUTtrue" in result.stdout, output[-3000:]
        assert len(sink.messages) == 1, output[-3000:]
        message = email.message_from_string(sink.messages[0])
        assert message["To"] == "ops@region.example"
        assert message["Subject"].startswith("[vaxreport]")
        body = "".join(part.get_payload(decode=True).decode() for part in message.walk() if not part.is_multipart())
        assert "manual__2026-11-20T09:00:00+00:00" in body
        assert "See the run's note and the task log in the Airflow UI." in html.unescape(body)
        assert_no_person_id(sink.messages[0] + body, {"199001012385"})
    finally:
        sink.stop()
