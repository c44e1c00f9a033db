"""The register emulator and the generator's ground truth agree on every defect.

Local validation rejects defects before they are sent, so the daily run rarely shows the register's
own verdicts. Here the same day is sent to the register unvalidated: every defect must come back
with exactly the code local validation gives it. That ties three independent pieces together (the
generator's truth, the package's rules and the emulator's rules).
"""

from datetime import date

import pytest
from tests.register_entries import ledger_rows

from vaxreport.fhir import bundles as fb
from vaxreport.pipeline import Runtime
from vaxreport.registry.outcomes import interpret
from vaxreport.synthetic.generate import generate_day

pytestmark = pytest.mark.integration
DAY = date(2026, 11, 18)


def test_unvalidated_defects_get_the_same_codes_from_the_register(embedded, emulator):
    records = generate_day(DAY, records=1500, seed=9, defect_rate=0.3, out_of_scope_rate=0.0)
    rows = ledger_rows(records)
    truth = {r.record_id: (r.expected_state, r.expected_code) for r in records}
    seen: dict[str, tuple[str, str | None]] = {}
    with Runtime().registry() as client:
        for chunk in fb.chunked(fb.send_order(rows)):
            answers = client.post_bundle(fb.batch_bundle([fb.immunization_entry(r) for r in chunk]))
            for row, answer in zip(chunk, answers, strict=True):
                out = interpret(answer)
                seen[row["source_record_id"]] = (out["state"], out.get("code"))
    expected = {
        rid: ("rejected_register", code) if state == "rejected_local" else (state, code)
        for rid, (state, code) in truth.items()
    }
    assert {rid: (seen[rid], expected[rid]) for rid in truth if seen[rid] != expected[rid]} == {}
    assert sum(state == "rejected_register" for state, _ in seen.values()) > 200
