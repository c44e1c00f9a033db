"""The reconciliation page rendered in headless Chromium: a PNG in the test artifacts, the summary
table present and every plot loaded (no broken image)."""

import re
import subprocess
from datetime import date

import pytest
from tests.conftest import ARTIFACTS, chromium_binary

from vaxreport.reconcile.month import CLASSES, Reconciliation, SourceRecord
from vaxreport.reports import monthly

pytestmark = pytest.mark.integration
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def _result() -> Reconciliation:
    result = Reconciliation(month=date(2026, 10, 1))
    units = [
        ("SE2321000016-0001", "Region Stockholm", "SE2321000016-BVC1", "BVC Rinkeby"),
        ("SE2321000016-0001", "Region Stockholm", "SE2321000016-VC02", "Vårdcentral Tensta"),
        ("SE5567654321-0001", "Vaccinationsbolaget Norden AB", "SE5567654321-VX11", "Vaccinationscentralen City"),
    ]
    n = 0
    for index, klass in enumerate(CLASSES):
        for cg_id, cg, unit_id, unit in units:
            for _ in range(1 + (index * 7 + len(unit)) % 9):
                n += 1
                result.records.append(
                    SourceRecord(
                        "urn:t",
                        f"R{n}",
                        cg_id,
                        cg,
                        unit_id,
                        unit,
                        "Priorix",
                        f"{n:016x}",
                        klass,
                        held=klass == "accepted",
                    )
                )
    result.register_counts = {u[2]: 10 for u in units}
    return result


def test_reconciliation_page_renders_with_its_plots(tmp_path):
    chromium = chromium_binary()
    trend = [
        {"month": f"2026-{m:02d}", "records": 100, "reject_rate": 0.05 + m / 200, "missing_rate": m / 1000}
        for m in range(1, 11)
    ]
    page = monthly.write(_result(), trend, tmp_path / "2026-10", threshold=0)
    ARTIFACTS.mkdir(exist_ok=True)
    png = ARTIFACTS / "reconciliation-2026-10.png"
    png.unlink(missing_ok=True)
    profile = tmp_path / "chromium-profile"
    subprocess.run(
        [
            chromium,
            *FLAGS,
            f"--user-data-dir={profile}",
            "--window-size=1280,2400",
            f"--screenshot={png}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert png.stat().st_size > 20_000  # a real rendering, not a blank page
    dom = subprocess.run(
        [chromium, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert re.search(r'data-images="(\d+)"', dom).group(1) == "3"  # two caregivers' plots and the trend
    assert 'data-images-ok="true"' in dom
    assert '<div id="summary"><table>' in dom
    assert "missing" in dom
