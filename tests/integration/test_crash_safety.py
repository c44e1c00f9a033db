"""The worker is killed (SIGKILL) at random points during submission, over and over, and restarted;
the register ends holding exactly the expected records, each once."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import date

import pytest
import sqlalchemy as sa
from tests.conftest import ROOT, embedded_environment, start_emulator

from vaxreport.pipeline import Runtime
from vaxreport.sources import writers
from vaxreport.synthetic.seed import generate_into

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DAY = date(2026, 11, 4)
KILLS = 20


def _progress(ledger_path) -> int:
    """Bundles checkpointed (X-Request-ID stored, the request about to go out) plus bundles
    answered, so far: each bundle moves it on twice, a claim of a whole chunk not at all (read
    beside the worker; WAL lets us)."""
    if not ledger_path.exists():
        return 0
    engine = sa.create_engine(f"sqlite:///{ledger_path}")
    try:
        with engine.connect() as conn:
            return conn.execute(
                sa.text(
                    "SELECT (SELECT count(*) FROM bundles WHERE request_id IS NOT NULL)"
                    " + (SELECT count(*) FROM bundles WHERE state = 'answered')"
                )
            ).scalar()
    except sa.exc.OperationalError:
        return 0
    finally:
        engine.dispose()


def test_killed_twenty_times_the_register_still_gets_each_record_once(tmp_path, monkeypatch):
    emulator = start_emulator(tmp_path, "--db", str(tmp_path / "register.sqlite"))
    try:
        env = embedded_environment(tmp_path / "var", emulator.base_url)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        rt = Runtime()
        generate_into(rt, "vaxreport_source_embedded", DAY, records=4000, seed=17)
        truth = writers.ground_truth(rt.engine("vaxreport_source_embedded"), DAY)
        rt.close()

        worker_env = {
            **os.environ,
            **env,
            "VAXREPORT_CONTEXT_ID": "0b6a8d4e-0000-4000-8000-00000000c0de",
            "PYTHONPATH": f"{ROOT / 'include'}",
            # paced slowly so twenty kills land before the ~40 bundles are all sent, however fast
            # the machine: at most 4 requests/s, two in flight
            "AIRFLOW_CONN_NVR_API": json.dumps(
                {
                    **json.loads(env["AIRFLOW_CONN_NVR_API"]),
                    "extra": {"max_requests_per_s": 4, "concurrency": 2},
                }
            ),
        }
        command = [sys.executable, "-m", "vaxreport", "run-day", "--day", DAY.isoformat()]
        ledger = tmp_path / "var" / "ledger.sqlite"
        rng = random.Random(7)
        kills = 0
        deadline = time.monotonic() + 420
        while kills < KILLS and time.monotonic() < deadline:
            before = _progress(ledger)
            worker = subprocess.Popen(command, env=worker_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while worker.poll() is None and _progress(ledger) <= before and time.monotonic() < deadline:
                time.sleep(0.02)  # wait until it is submitting
            if worker.poll() is not None:
                break  # it finished before we could kill it again
            time.sleep(rng.uniform(0, 0.1))  # several bundles are in flight at once: kill soon
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            kills += 1
        final = subprocess.run(command, env=worker_env, capture_output=True, text=True, timeout=300)
        assert final.returncode == 0, final.stdout + final.stderr
        assert kills >= KILLS, f"only {kills} kills happened during submission"

        held = [i for i in emulator.immunizations() if not i["deleted"]]
        expected = {rid for rid, (state, _) in truth.items() if state == "accepted"}
        ids = [i["identifier_value"] for i in held]
        assert len(ids) == len(set(ids))  # no record twice
        assert set(ids) == expected  # and none missing
        summary = json.loads((tmp_path / "var" / "reports" / DAY.isoformat() / "summary.json").read_text())
        assert summary["accepted"] == len(expected)
        assert summary["pending"] == 0
        assert summary["failed"] == 0
    finally:
        emulator.stop()
