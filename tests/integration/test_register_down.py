"""A register that cannot be reached: records end `failed`, the day still adds up, and the next
run sends them."""

import json
from datetime import date

import pytest
from tests.conftest import free_port

from vaxreport.pipeline import Runtime, day_summary, refresh_catalog, run_day
from vaxreport.sources import embedded as source
from vaxreport.synthetic.generate import generate_day

pytestmark = pytest.mark.integration
DAY, NEXT = date(2026, 11, 15), date(2026, 11, 16)
TERMINAL = ("excluded", "rejected_local", "accepted", "duplicate", "rejected_register", "failed")


def _registry_env(url: str) -> str:
    return json.dumps(
        {
            "conn_type": "http",
            "host": url,
            "login": "vaxreport-dev",
            "password": "dev-secret",
            "extra": {"max_attempts": 2, "backoff_base_s": 0.01, "timeout_s": 2},
        }
    )


def test_failed_records_are_sent_by_the_next_run(embedded, emulator, monkeypatch):
    rt = Runtime()
    src = rt.engine("vaxreport_source_embedded")
    source.write_day(src, generate_day(DAY, records=400, seed=2), DAY)
    source.write_day(src, generate_day(NEXT, records=300, seed=2), NEXT)
    truth = source.ground_truth(src, DAY)

    refresh_catalog(rt)  # the catalog is stored while the register is up; then the register goes away
    monkeypatch.setenv("AIRFLOW_CONN_NVR_API", _registry_env(f"http://127.0.0.1:{free_port()}"))
    down = run_day(Runtime(), DAY)  # goes on with the stored catalog
    sendable = sum(state in {"accepted", "duplicate"} for state, _ in truth.values())
    assert down["failed"] == sendable
    assert down["extracted"] == sum(down[k] for k in TERMINAL)
    assert emulator.stats()["immunizations"] == 0

    monkeypatch.setenv("AIRFLOW_CONN_NVR_API", _registry_env(emulator.base_url))
    next_day = run_day(Runtime(), NEXT)
    assert next_day["failed"] == 0
    after = day_summary(Runtime(), DAY, sent=0)
    assert after["failed"] == 0
    assert after["accepted"] == sum(state == "accepted" for state, _ in truth.values())
    assert next_day["sent"] == sendable + next_day["accepted"] + next_day["duplicate"]
