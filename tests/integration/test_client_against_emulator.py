"""The register client against a real emulator: tokens lost on restart, and rate limits."""

from datetime import date

import pytest
from tests.conftest import embedded_environment, start_emulator

from vaxreport.fhir import bundles as fb
from vaxreport.pipeline import Runtime, run_day
from vaxreport.sources import embedded as source
from vaxreport.synthetic.generate import generate_day

pytestmark = pytest.mark.integration
DAY = date(2026, 11, 17)


def _bundle(record_id: str) -> dict:
    rec = generate_day(DAY, records=1, seed=3, defect_rate=0, out_of_scope_rate=0)[0]
    row = {
        **rec.source_row(),
        "source": "urn:test",
        "source_record_id": record_id,
        "person_id": rec.patient_id,
        "record_status": "completed",
    }
    return fb.batch_bundle([fb.immunization_entry(row)])


def test_token_lost_in_a_register_restart_is_replaced_once(tmp_path, monkeypatch):
    db = tmp_path / "register.sqlite"
    emu = start_emulator(tmp_path, "--db", str(db))
    port = int(emu.base_url.rsplit(":", 1)[1])
    for key, value in embedded_environment(tmp_path / "var", emu.base_url).items():
        monkeypatch.setenv(key, value)
    client = Runtime().registry()
    try:
        assert client.post_bundle(_bundle("a"))[0]["response"]["status"].startswith("201")
        emu.stop()  # tokens live in the register's memory: the restart revokes ours
        emu = start_emulator(tmp_path, "--db", str(db), port=port)
        answer = client.post_bundle(_bundle("a"))
        assert "DUPLICATE-IDENTIFIER" in str(answer)  # the store survived, the retry is recognised
    finally:
        client.close()
        emu.stop()


def test_a_day_completes_exactly_under_a_tight_rate_limit(tmp_path, monkeypatch, caplog):
    emu = start_emulator(tmp_path, "--rate-limit", "3")
    try:
        for key, value in embedded_environment(tmp_path / "var", emu.base_url).items():
            monkeypatch.setenv(key, value)
        rt = Runtime()
        source.write_day(rt.engine("vaxreport_source_embedded"), generate_day(DAY, records=1200, seed=5), DAY)
        truth = source.ground_truth(rt.engine("vaxreport_source_embedded"), DAY)
        summary = run_day(rt, DAY)
        assert summary["failed"] == 0
        assert summary["accepted"] == sum(state == "accepted" for state, _ in truth.values())
        assert emu.stats()["immunizations"] == summary["accepted"]
        assert emu.stats()["by_outcome"].get("CREATED", 0) == summary["accepted"]
        assert "HTTP 429" in caplog.text  # the limit was really hit, and ridden out
    finally:
        emu.stop()
