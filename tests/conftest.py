"""Shared fixtures: a real emulator process on 127.0.0.1, and an isolated embedded environment.

Every test must carry one of the markers (unit, integration, dags); an unmarked test fails, so the
three layers stay honest about what they touch.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"unit", "integration", "dags"}
ARTIFACTS = ROOT / "test-artifacts"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if not LAYERS & {m.name for m in item.iter_markers()}:
            raise pytest.UsageError(f"{item.nodeid} carries none of the markers {sorted(LAYERS)}")


def chromium_binary() -> str:
    """Debian's chromium, which the browser tests drive (Playwright's own download is blocked)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("VAXREPORT_REQUIRE_SERVERS") == "1":
        pytest.fail("Debian's chromium is not installed (.ci/run installs it)")
    pytest.skip("Debian's chromium is not installed: apt-get install chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Emulator:
    base_url: str
    process: subprocess.Popen
    log_path: Path

    def stats(self) -> dict:
        return httpx.get(f"{self.base_url}/admin/stats", timeout=10).json()

    def immunizations(self) -> list[dict]:
        return httpx.get(f"{self.base_url}/admin/immunizations", timeout=30).json()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_emulator(tmp: Path, *args: str, port: int | None = None) -> Emulator:
    """The emulator as its own process, exactly as `make run` starts it."""
    port = port or free_port()
    log_path = tmp / f"emulator-{port}.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "include")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nvr_emulator", "--host", "127.0.0.1", "--port", str(port), *args],
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"emulator exited: {log_path.read_text()[-2000:]}")
        try:
            httpx.get(f"{base}/admin/stats", timeout=1)
            return Emulator(base, proc, log_path)
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("emulator did not start within 30 s")


@pytest.fixture
def emulator(tmp_path):
    emu = start_emulator(tmp_path, "--db", str(tmp_path / "register.sqlite"))
    yield emu
    emu.stop()


def embedded_environment(home: Path, registry_url: str | None = None) -> dict[str, str]:
    """The environment variables of an embedded-default installation living under `home`."""
    env = {
        "VAXREPORT_HOME": str(home),
        "VAXREPORT_SOURCES": "vaxreport_source_embedded",
        "AIRFLOW_CONN_VAXREPORT_DB": json.dumps({"conn_type": "sqlite", "host": str(home / "ledger.sqlite")}),
        "AIRFLOW_CONN_VAXREPORT_SOURCE_EMBEDDED": json.dumps(
            {"conn_type": "sqlite", "host": str(home / "source.sqlite"), "extra": {"kind": "legacy_export"}}
        ),
        "GX_ANALYTICS_ENABLED": "false",
    }
    if registry_url:
        env["AIRFLOW_CONN_NVR_API"] = json.dumps(
            {"conn_type": "http", "host": registry_url, "login": "vaxreport-dev", "password": "dev-secret"}
        )
    return env


@pytest.fixture
def embedded(tmp_path, monkeypatch, emulator):
    """An embedded installation in tmp_path, wired to a fresh emulator."""
    home = tmp_path / "var"
    for key, value in embedded_environment(home, emulator.base_url).items():
        monkeypatch.setenv(key, value)
    return home
