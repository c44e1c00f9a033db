"""The reports page: 401 without credentials, 403 with wrong ones, the periods and files with them."""

import threading
import time

import httpx
import pytest
import uvicorn
from tests.conftest import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def served(tmp_path, monkeypatch):
    from vaxreport_airflow.reports_app import create_app

    (tmp_path / "2026-11-21" / "rejections").mkdir(parents=True)
    (tmp_path / "2026-11-21" / "rejections" / "index.html").write_text("<p>rejections</p>")
    (tmp_path / "reconciliation" / "2026-10").mkdir(parents=True)
    (tmp_path / "reconciliation" / "2026-10" / "summary.csv").write_text("class,records\naccepted,3\n")
    (tmp_path / "secret.txt").write_text("outside")  # at the root, reachable only by its path
    monkeypatch.setenv("VAXREPORT_REPORTS_USERS", "analyst:s3cret-pass")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(tmp_path), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_without_credentials_401_with_wrong_ones_403(served):
    anonymous = httpx.get(f"{served}/")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic")
    assert httpx.get(f"{served}/", auth=("analyst", "wrong")).status_code == 403
    assert httpx.get(f"{served}/", auth=("someone", "s3cret-pass")).status_code == 403
    assert httpx.get(f"{served}/files/reconciliation/2026-10/summary.csv").status_code == 401


def test_with_credentials_the_periods_and_their_files(served):
    page = httpx.get(f"{served}/", auth=("analyst", "s3cret-pass"))
    assert page.status_code == 200
    assert "2026-11-21" in page.text
    assert "2026-10" in page.text
    assert 'href="files/reconciliation/2026-10/summary.csv"' in page.text
    csv = httpx.get(f"{served}/files/reconciliation/2026-10/summary.csv", auth=("analyst", "s3cret-pass"))
    assert csv.text.startswith("class,records")
    escape = httpx.get(f"{served}/files/..%2F..%2Fetc%2Fpasswd", auth=("analyst", "s3cret-pass"))
    assert escape.status_code == 404
