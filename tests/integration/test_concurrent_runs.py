"""Two runs reaching for the same work at once (overlapping backfill days, or a manual run beside a
scheduled one) never send a bundle twice."""

from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pytest

from vaxreport.pipeline import Runtime, build_day, extract_day, report_day, submit_day, validate_day
from vaxreport.sources import writers
from vaxreport.synthetic.seed import generate_into

pytestmark = pytest.mark.integration
DAY = date(2026, 11, 3)


def test_concurrent_submissions_send_each_bundle_once(embedded, emulator):
    rt = Runtime()
    generate_into(rt, "vaxreport_source_embedded", DAY, records=900, seed=12)
    truth = writers.ground_truth(rt.engine("vaxreport_source_embedded"), DAY)
    extract_day(rt, DAY)
    validate_day(rt, DAY)
    bundles = build_day(rt, DAY)["bundles"]
    assert bundles >= 8

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: submit_day(Runtime(), DAY), range(3)))

    assert sum(r["bundles"] for r in results) == bundles
    assert sum(r["sent"] for r in results) == sum(state in {"accepted", "duplicate"} for state, _ in truth.values())
    assert emulator.stats()["posts"] == bundles  # not one bundle posted twice
    summary = report_day(rt, DAY, sent=0)
    assert summary["accepted"] == sum(state == "accepted" for state, _ in truth.values())
    assert summary["pending"] == 0
