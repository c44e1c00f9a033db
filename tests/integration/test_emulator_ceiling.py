"""The emulator's ceiling measurement really sends, and counts what the emulator accepted.

Behaviour only, no timings: the bundles it posts are stored, the entries it reports are the
entries the emulator answered, a 429 is waited out and sent again under the same request id,
a lost token is fetched again, and a refusal no retry can fix stops the measurement.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

import httpx
import pytest
from tests.register_entries import ledger_rows

from nvr_emulator.ceiling import CeilingError, main, measure_ceiling, synthetic_bundles
from nvr_emulator.config import EmulatorConfig
from nvr_emulator.server import run_in_thread
from vaxreport.fhir import bundles as fb
from vaxreport.synthetic.generate import generate_day

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration

DAY = dt.date(2026, 11, 18)
TODAY = dt.date(2026, 11, 22)


def pipeline_bundles(count: int) -> list[bytes]:
    """``count`` bundles of 100 valid vaccinations, built by the pipeline's own bundle builder."""
    records = generate_day(DAY, records=count * 100, seed=4, defect_rate=0.0, out_of_scope_rate=0.0)
    rows = ledger_rows(records)
    return [
        json.dumps(fb.batch_bundle([fb.immunization_entry(row) for row in chunk])).encode()
        for chunk in fb.chunked(fb.send_order(rows))
    ]


@pytest.fixture
def register(tmp_path: Path) -> Iterator[str]:
    url, stop = run_in_thread(EmulatorConfig(db=tmp_path / "nvr.sqlite", rate_limit=0, today=TODAY))
    yield url
    stop()


def stats(url: str) -> dict:
    return httpx.get(f"{url}/admin/stats", timeout=30).json()


def test_every_bundle_is_posted_and_every_entry_counted(register: str) -> None:
    bundles = pipeline_bundles(20)
    assert len(bundles) == 20

    result = measure_ceiling(register, bundles, concurrency=4)

    after = stats(register)
    assert after["posts"] == 20
    assert after["entries"] == 2000
    assert result["bundles"] == 20
    assert result["entries"] == 2000
    assert sum(result["statuses"].values()) == 2000
    # What the function saw created is what the emulator stored.
    assert result["statuses"].get("201", 0) == after["by_outcome"]["CREATED"] == after["immunizations"]
    assert result["retries"] == 0
    assert result["wall_seconds"] > 0
    assert result["entries_per_second"] == pytest.approx(2000 / result["wall_seconds"])
    assert result["bundles_per_second"] == pytest.approx(20 / result["wall_seconds"])


def test_synthetic_bundles_are_all_new_vaccinations(register: str) -> None:
    result = measure_ceiling(register, synthetic_bundles(20), concurrency=8)

    assert result["entries"] == 2000
    assert result["statuses"] == {"201": 2000}
    assert stats(register)["immunizations"] == 2000


def test_a_rate_limit_is_waited_out_not_counted_as_accepted(tmp_path: Path) -> None:
    url, stop = run_in_thread(EmulatorConfig(db=tmp_path / "nvr.sqlite", rate_limit=2, today=TODAY))
    try:
        result = measure_ceiling(url, synthetic_bundles(6, size=5), concurrency=3)
        after = stats(url)
    finally:
        stop()
    assert result["retries"] > 0  # it met 429 and sent the same bundles again
    assert result["entries"] == 30
    assert result["statuses"] == {"201": 30}
    assert after["posts"] == 6  # each bundle processed once: refused requests are not processed
    assert after["immunizations"] == 30


def test_a_refused_token_is_fetched_again(register: str) -> None:
    fetched: list[str] = []

    def token() -> str:
        if not fetched:
            fetched.append("stale")
            return "stale"
        answer = httpx.post(
            f"{register}/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=("vaxreport-dev", "dev-secret"),
        )
        fetched.append(answer.json()["access_token"])
        return fetched[-1]

    result = measure_ceiling(register, synthetic_bundles(3, size=10), concurrency=2, token=token)

    assert len(fetched) == 2  # the stale one, then one fresh token shared by both workers
    assert result["entries"] == 30


def test_a_bundle_the_emulator_refuses_stops_the_measurement(register: str) -> None:
    not_a_batch = json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [{}]}).encode()
    with pytest.raises(CeilingError, match="HTTP 400"):
        measure_ceiling(register, [not_a_batch], concurrency=1)


def test_the_command_line_prints_the_measurement(register: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--base-url", register, "--bundles", "3", "--size", "10", "--concurrency", "2"]) == 0

    printed = json.loads(capsys.readouterr().out)
    assert printed["bundles"] == 3
    assert printed["entries"] == 30
    assert stats(register)["immunizations"] == 30
